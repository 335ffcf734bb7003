"""One readable training loop (nanoGPT-style): data, model, objective, optimiser, validate, checkpoint.

``Trainer(config).fit()`` trains for ``run.max_steps`` steps and writes into ``run.dir``:
``config.yaml`` (the resolved config), ``log.csv`` (+ ``tensorboard/`` when installed), and the
checkpoint folders ``best`` (highest validation PSNR) and ``last`` (with the full trainer state, for
``resume``). Every random choice of the data pipeline derives from (seed, step), so a run killed and
resumed from ``last`` reaches the same weights as one that never stopped. Nothing here prints: progress
goes to the ``on_event`` callback.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Subset

from dslrify import metrics
from dslrify.checkpoint import save_checkpoint
from dslrify.data import DPEDDataset, PairDataset, open_pairs
from dslrify.enhancer import pick_device
from dslrify.errors import DslrifyError
from dslrify.models import EnhancementModel, build_model
from dslrify.train import distributed
from dslrify.train.config import TrainConfig, load_config
from dslrify.train.objective import Objective
from dslrify.train.sampling import PAIRS, UNPAIRED, StepBatchSampler, TrainPatches, split_indices
from dslrify.train.state import find_resumable, load_state, replace_dir, rng_state, save_state, set_rng_state
from dslrify.zoo import resolve_model

Event = Callable[..., None]


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    best_step: int
    best: dict[str, float] = field(default_factory=dict)  # validation metrics of `best`


def default_run_dir(config: TrainConfig) -> Path:
    return Path("runs") / f"{config.name}-{datetime.now():%Y%m%d-%H%M%S}"


class Trainer:
    """Train ``config``; ``resume=RUN_DIR`` continues that run from its ``last`` checkpoint."""

    def __init__(
        self, config: TrainConfig, *, resume: str | Path | None = None, on_event: Event | None = None
    ):
        self.cfg = cfg = config
        self.emit: Event = on_event or (lambda kind, **data: None)
        self.dist = distributed.DistInfo.from_env()
        device = pick_device(cfg.run.device)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        distributed.init(self.dist, device)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        torch.manual_seed(cfg.run.seed)

        self.run_dir = Path(resume) if resume else Path(cfg.run.dir) if cfg.run.dir else default_run_dir(cfg)
        self._setup_data()
        self._setup_model()
        self.objective = Objective(cfg.loss, cfg.data.patch_size).to(device)
        self._setup_optim()
        self.step = 0
        self.best_psnr, self.best_step = -math.inf, 0
        self.best_metrics: dict[str, float] = {}
        self.last_val: dict[str, float] = {}
        if resume:
            self._load(resume)

    # -- set-up ---------------------------------------------------------------------------------
    def _setup_data(self) -> None:
        d, r = self.cfg.data, self.cfg.run
        pairs = open_pairs(d.root, d.phone, split="train")
        dped = isinstance(pairs, DPEDDataset)
        terms = [
            "DPED data: non-commercial research use" if dped else "user-supplied pairs: their terms apply"
        ]
        self.val_set: PairDataset | Subset[Any] | None
        if d.val_split == "test":
            train_idx, self.val_set = list(range(len(pairs))), open_pairs(d.root, d.phone, split="test")
        else:
            train_idx, val_idx = split_indices(len(pairs), r.seed, d.val_fraction, d.folds, d.fold)
            self.val_set = Subset(pairs, val_idx) if val_idx else None
        described = f"{d.root} ({type(pairs).__name__}, phone {d.phone}): {len(train_idx)} training pairs"
        if d.synthetic_root:  # pretraining: synthetic pairs replace the real ones; validation stays real
            from dslrify.data.synthetic import SyntheticPairs

            # Keep every (downscaled) photo decoded: the sampler visits them in random order.
            pairs = SyntheticPairs(
                d.synthetic_root, d.patch_size, d.synthetic_pairs_per_photo, r.seed, cache_size=64
            )
            train_idx = list(range(len(pairs)))
            described = f"synthetic degradations of {d.synthetic_root} ({len(pairs)} patches)"
        unpaired = None
        self.teacher = None
        if d.teacher:
            self.teacher = resolve_model(d.teacher)[0].to(self.device).eval().requires_grad_(False)
            terms.append(f"distilled from teacher {d.teacher}: its terms apply too")
            described += f"; teacher {d.teacher} (blend on pairs {d.teacher_on_pairs})"
        if d.unpaired_root:
            from dslrify.data.photos import PhotoFolder

            unpaired = PhotoFolder(d.unpaired_root)
            described += f"; {len(unpaired)} unpaired photos ({d.unpaired_share:.0%} of each batch)"
        clean = None
        if d.identity_share > 0 or d.degraded_share > 0:
            from dslrify.data.clean import CleanPatches

            # The DSLR targets of the training split only: a held-out fold's are never seen.
            dslr = [] if d.synthetic_root else train_idx
            clean = CleanPatches(pairs, dslr, d.clean_root, d.patch_size, d.clean_patches_per_photo, r.seed)
            described += (
                f"; {clean.describe()} ({d.identity_share:.0%} of each batch as themselves, "
                f"{d.degraded_share:.0%} degraded)"
            )
        self.train_pairs = TrainPatches(
            pairs, train_idx, d.patch_size, r.seed, d.flips, d.jitter, unpaired, clean
        )
        self.n_unpaired = len(unpaired) if unpaired is not None else 0
        self.n_clean = len(clean) if clean is not None else 0
        self.licence = "; ".join(terms)
        self.data_description = f"{described}; {len(self.val_set) if self.val_set else 0} validation pairs"

    def _setup_model(self) -> None:
        m = self.cfg.model
        model: torch.nn.Module
        if m.init:
            model, config, _ = resolve_model(m.init)
            self.model_args = config["args"]
            if config["architecture"] != m.architecture:
                # A wrapper architecture (``guided``) may start from a checkpoint of the network it wraps.
                wrapper, self.model_args = build_model(m.architecture, m.args), dict(m.args)
                if not (isinstance(wrapper, EnhancementModel) and wrapper.init_from(model, config)):
                    raise DslrifyError(
                        f"model.init {m.init} is a {config['architecture']!r} with args {config['args']}, "
                        f"which {m.architecture!r} with args {m.args} cannot start from",
                        "set model.architecture (and model.args) to match it",
                    )
                model = wrapper
        else:
            model, self.model_args = build_model(m.architecture, m.args), dict(m.args)
        if not isinstance(model, EnhancementModel):
            raise DslrifyError(f"{m.architecture!r} is not an enhancement model (a discriminator?)")
        if m.freeze:
            frozen = [p.requires_grad_(False) for n, p in model.named_parameters() if n.startswith(m.freeze)]
            if not frozen:
                raise DslrifyError(f"model.freeze {m.freeze!r} matches no parameter of {m.architecture!r}")
        self.model = model.to(self.device).train()
        self.ema = None
        if self.cfg.run.ema > 0:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.run.ema))
        # The module that runs training steps: the model, or a DDP and/or torch.compile wrapper of it.
        self.net: Callable[..., Any] = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        if self.cfg.run.compile and self.device.type == "cuda":
            self.net = torch.compile(self.net)

    def _setup_optim(self) -> None:
        o, s, r = self.cfg.optim, self.cfg.schedule, self.cfg.run
        trained = [p for p in self.model.parameters() if p.requires_grad]  # model.freeze keeps the rest
        self.opt = torch.optim.Adam(trained, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)

        def factor(step: int) -> float:
            if step < s.warmup_steps:
                return (step + 1) / s.warmup_steps
            if s.kind == "constant":
                return 1.0
            progress = (step - s.warmup_steps) / max(1, r.max_steps - s.warmup_steps)
            return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, factor)
        self.disc = self.objective.discriminator
        self.d_net: torch.nn.Module | None = None
        if self.disc is not None:
            self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=o.d_lr, betas=o.betas)
            self.d_net = self.disc
            if self.dist.enabled:
                ids = [self.device.index] if self.device.type == "cuda" else None
                self.d_net = DistributedDataParallel(self.disc, device_ids=ids)
                self.objective.discriminator_net = self.d_net

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> TrainResult:
        """Train up to ``run.max_steps`` (or stop after step ``until``, as a crash would)."""
        r = self.cfg.run
        stop = min(r.max_steps, until) if until else r.max_steps
        main = self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
        sampler = StepBatchSampler(
            len(self.train_pairs),
            r.batch_size,
            r.seed,
            self.step,
            stop,
            self.dist.rank,
            self.dist.world,
            self.n_unpaired,
            self.cfg.data.unpaired_share,
            self.n_clean,
            self.cfg.data.identity_share,
            self.cfg.data.degraded_share,
        )
        loader = DataLoader(self.train_pairs, batch_sampler=sampler, num_workers=self.cfg.data.workers)
        logger = _Logs(self.run_dir, enabled=main)
        self.emit("start", run_dir=self.run_dir, start=self.step, total=stop, data=self.data_description)
        amp = r.amp and self.device.type == "cuda"
        tick = time.perf_counter()
        for x, y, source in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.teacher is not None:
                y = self._teach(x, y, source.to(self.device))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                out = self.net(x)
            # Losses in float32: SSIM's variances cancel catastrophically in bf16 (NaN at step 2).
            out = out.float()
            loss, parts = self.objective.generator_loss(x, out, y)
            if not torch.isfinite(loss):
                raise DslrifyError(
                    f"the loss became {float(loss.detach())} at step {self.step + 1} ({parts})",
                    "lower optim.lr or set optim.grad_clip; "
                    f"the last good checkpoint is {self.run_dir / 'last'}",
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
            self.opt.step()
            self.sched.step()
            if self.d_net is not None:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                    d_loss = self.objective.discriminator_loss(x, out, y).float()
                self.d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                self.d_opt.step()
                parts["discriminator"] = float(d_loss.detach())
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.step += 1
            row: dict[str, Any] = {
                "step": self.step,
                "lr": self.sched.get_last_lr()[0],
                "loss": float(loss.detach()),
                **parts,
            }
            if self.step % r.log_every == 0 or self.step == stop:
                now = time.perf_counter()
                row["steps_per_s"] = r.log_every / max(1e-9, now - tick)
                tick = now
            if self.step % r.val_every == 0 or self.step == r.max_steps:
                row.update(self._validate())
            logger.write(row)
            self.emit("step", **row)
            if self.step % r.checkpoint_every == 0 or self.step in (stop, r.max_steps):
                self._save()
        distributed.check_in_sync(self.dist, self.model, self.device)
        logger.close()
        distributed.barrier(self.dist)
        return TrainResult(self.run_dir, self.step, self.best_step, self.best_metrics)

    @torch.no_grad()
    def _teach(self, x: torch.Tensor, y: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Targets with the teacher's output: for unpaired photos alone, blended into real targets; the
        clean patches' own targets (identity, degraded) are kept."""
        assert self.teacher is not None
        taught = self.teacher(x).float().clamp(0, 1)
        a = self.cfg.data.teacher_on_pairs
        source = source.view(-1, 1, 1, 1)
        return torch.where(
            source == PAIRS, (1 - a) * y + a * taught, torch.where(source == UNPAIRED, taught, y)
        )

    def eval_model(self) -> torch.nn.Module:
        """The weights that validation and ``best`` use: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """PSNR/SSIM (8-bit protocol) on the validation pairs; saves ``best`` when PSNR improves."""
        if self.val_set is None:
            return {}
        model = self.eval_model()
        model.eval()
        scores: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("psnr", "ssim", "identity_psnr", "identity_ssim")
        }
        for x, y in DataLoader(self.val_set, batch_size=16):
            x, y = x.to(self.device), y.to(self.device)
            # Phone -> DSLR, and DSLR -> DSLR: the held-out DSLR patches should come out as they went in.
            for prefix, inp in (("", x), ("identity_", y)):
                out = metrics.quantize_8bit(model(inp).float())
                scores[f"{prefix}psnr"].append(metrics.psnr(out, y).cpu())
                scores[f"{prefix}ssim"].append(metrics.ssim(out, y).cpu())
        self.model.train()
        result = {f"val_{k}": float(torch.cat(v).mean()) for k, v in scores.items()}
        self.last_val = result
        if result["val_psnr"] > self.best_psnr:
            self.best_psnr, self.best_step, self.best_metrics = result["val_psnr"], self.step, result
            if self.dist.is_main:
                replace_dir(
                    self._write_model(self.run_dir / "best", extra={"validation": result}),
                    self.run_dir / "best",
                )
        self.emit("validation", step=self.step, best_step=self.best_step, **result)
        return result

    # -- checkpoints ----------------------------------------------------------------------------
    def _write_model(self, folder: Path, extra: dict[str, Any] | None = None) -> Path:
        tmp = folder.with_name(f".{folder.name}.tmp")
        training = {
            "data": self.data_description,
            "recipe": f"dslrify train, config '{self.cfg.name}' (config.yaml in the run folder)",
            "licence": self.licence,
            "init": self.cfg.model.init,
            "step": self.step,
            "config": self.cfg.to_dict(),
            **(extra or {}),
        }
        save_checkpoint(
            tmp,
            self.eval_model(),
            self.cfg.model.architecture,
            self.model_args,
            training,
            borders=self.cfg.model.borders,
        )
        return tmp

    def _save(self) -> None:
        """Write ``last`` (model + full trainer state) atomically; only rank 0 writes."""
        if self.dist.is_main:
            tmp = self._write_model(self.run_dir / "last")
            state: dict[str, Any] = {
                "step": self.step,
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "rng": rng_state(),
                "best": [self.best_psnr, self.best_step, self.best_metrics],
            }
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            if self.disc is not None:
                state["discriminator"] = self.disc.state_dict()
                state["d_optimizer"] = self.d_opt.state_dict()
            save_state(tmp, state)
            replace_dir(tmp, self.run_dir / "last")
        distributed.barrier(self.dist)

    def _load(self, run_dir: str | Path) -> None:
        folder = find_resumable(Path(run_dir))
        if folder is None:
            raise DslrifyError(
                f"{run_dir} holds no resumable checkpoint (last/trainer_state.*)",
                "start a new run, or point --resume at a run folder",
            )
        state = load_state(folder)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.disc is not None:
            self.disc.load_state_dict(state["discriminator"])
            self.d_opt.load_state_dict(state["d_optimizer"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.best_psnr, self.best_step, self.best_metrics = state["best"]


class _Logs:
    """log.csv (rewritten only when a new column appears or a resumed run redoes steps; appended to
    otherwise) and TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "log.csv"
        self.rows: list[dict[str, Any]] = []
        self.keys: list[str] = []
        if enabled and self.path.is_file():
            with self.path.open() as f:
                self.rows = list(csv.DictReader(f))
            self.keys = list(self.rows[0]) if self.rows else []
        self.tb: SummaryWriter | None = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional: pip install 'dslrify[train]'
                pass
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        redone = bool(self.rows) and int(self.rows[-1]["step"]) >= row["step"]
        if redone:  # resumed from an earlier checkpoint: forget the steps that are being redone
            self.rows = [r for r in self.rows if int(r["step"]) < row["step"]]
        self.rows.append(row)
        new_keys = [k for k in row if k not in self.keys]
        if new_keys or redone or not self.path.is_file():
            self.keys += new_keys
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.keys)
                w.writeheader()
                w.writerows(self.rows)
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.keys).writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def train(
    config_path: str | Path | None,
    overrides: list[str] | None = None,
    resume: str | Path | None = None,
    on_event: Event | None = None,
) -> TrainResult:
    """Load a config (or the resumed run's own), train, and shut DDP down."""
    if resume is not None:
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise DslrifyError(f"{resume} is not a run folder (no config.yaml)")
        config = load_config(saved, overrides)
    else:
        config = load_config(config_path, overrides)
    trainer = Trainer(config, resume=resume, on_event=on_event)
    try:
        return trainer.fit()
    finally:
        distributed.shutdown(trainer.dist)
