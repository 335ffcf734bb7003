"""The training objective: weighted loss terms from ``LossConfig``, and the optional discriminator.

Fidelity terms (L1, MSE, SSIM, MS-SSIM, blurred colour, TV, image gradients) compare output and
target; ``perceptual`` compares VGG-19 features (DPED's content loss); ``adversarial`` asks a
discriminator: DPED's on grayscale images (its texture loss), or the paper's conditional PatchGAN that
sees input and output together.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from dslrify import losses
from dslrify.models.discriminator import PatchDiscriminator
from dslrify.models.dped import DPEDDiscriminator
from dslrify.train.config import LossConfig

Term = Callable[[Tensor, Tensor, Tensor], Tensor]  # (input, output, target) -> scalar


class Objective(nn.Module):
    """``generator_loss(x, out, y) -> (total, parts)``; ``discriminator_loss(x, out, y)`` when adversarial."""

    def __init__(self, cfg: LossConfig, patch_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        terms: dict[str, tuple[float, Term]] = {
            "l1": (cfg.l1, lambda x, o, y: losses.l1_loss(o, y)),
            "mse": (cfg.mse, lambda x, o, y: losses.mse_loss(o, y)),
            "ssim": (cfg.ssim, lambda x, o, y: losses.ssim_loss(o, y, win_size=7)),
            "ms_ssim": (cfg.ms_ssim, lambda x, o, y: losses.ms_ssim_loss(o, y, win_size=7)),
            "color": (cfg.color, lambda x, o, y: losses.color_loss(o, y)),
            "tv": (cfg.tv, lambda x, o, y: losses.tv_loss(o)),
            "gradient": (cfg.gradient, lambda x, o, y: losses.gradient_loss(o, y)),
        }
        self.terms = {k: v for k, v in terms.items() if v[0] > 0}
        self.perceptual = None
        if cfg.perceptual > 0:
            # Loads (or downloads) VGG-19 now, so a missing file stops the run at start-up.
            self.perceptual = losses.PerceptualLoss(
                layer=cfg.perceptual_layer, weights=cfg.perceptual_weights
            )
        self.discriminator: nn.Module | None = None
        self.discriminator_net: nn.Module | None = None
        if cfg.adversarial > 0:
            if cfg.discriminator == "dped":
                self.discriminator = DPEDDiscriminator(patch_size=patch_size)
            else:
                self.discriminator = PatchDiscriminator(in_channels=6)
        if not self.terms and self.perceptual is None and self.discriminator is None:
            from dslrify.errors import DslrifyError

            raise DslrifyError("every loss weight is 0: nothing to train", "set e.g. loss.l1=1")

    def _score(self, x: Tensor, candidate: Tensor) -> Tensor:
        """Discriminator logits that ``candidate`` is a real DSLR photo (given ``x`` when conditional)."""
        assert self.discriminator is not None
        # Under DDP the trainer sets ``discriminator_net`` to the wrapped module so gradients are averaged.
        net = self.discriminator_net or self.discriminator
        if isinstance(self.discriminator, DPEDDiscriminator):
            logits = net(losses.to_grayscale(candidate))
            # DPED's column 0 is "DSLR photo"; a two-class softmax is the sigmoid of the logit difference.
            return logits[:, 0] - logits[:, 1]
        return net(x, candidate)

    def generator_loss(self, x: Tensor, out: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        parts: dict[str, Tensor] = {name: fn(x, out, y) for name, (_, fn) in self.terms.items()}
        total = sum(self.terms[name][0] * value for name, value in parts.items())
        if self.perceptual is not None:
            parts["perceptual"] = self.perceptual(out, y)
            total = total + self.cfg.perceptual * parts["perceptual"]
        if self.discriminator is not None:
            parts["adversarial"] = losses.adversarial_loss(
                self._score(x, out), True, self.cfg.adversarial_mode
            )
            total = total + self.cfg.adversarial * parts["adversarial"]
        assert isinstance(total, Tensor)  # not sum()'s 0: __init__ refuses a loss without terms
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def discriminator_loss(self, x: Tensor, out: Tensor, y: Tensor) -> Tensor:
        real = self._score(x, y)
        fake = self._score(x, out.detach())
        return losses.discriminator_loss(real, fake, self.cfg.adversarial_mode)
