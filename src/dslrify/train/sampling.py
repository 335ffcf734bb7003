"""Training data: validation splits, and patches whose every random choice derives from (seed, step).

Nothing here keeps random state: the pairs in step ``s`` and their crops, flips and jitter are a pure
function of ``(seed, s)``. That is what makes a resumed run reach exactly the weights of an uninterrupted
one, with any number of loader workers, and lets DDP ranks take disjoint slices of one global batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from dslrify.data import PairDataset
from dslrify.errors import DataError


def split_indices(
    n: int, seed: int, val_fraction: float, folds: int = 0, fold: int = 0
) -> tuple[list[int], list[int]]:
    """(train, validation) indices of ``n`` pairs: a seeded holdout share, or fold ``fold`` of ``folds``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(perm[fold::folds]) if folds else sorted(perm[: round(n * val_fraction)])
    held = set(val)
    train = [i for i in range(n) if i not in held]
    if not train:
        raise DataError(f"no training pairs left out of {n} after the validation split")
    return train, val


def _generator(seed: int, step: int, slot: int) -> torch.Generator:
    # A distinct, reproducible stream per (seed, step, slot). torch's CPU generator keeps only 32 bits of
    # a seed, so the three numbers are hashed into 32 well-mixed bits rather than combined arithmetically.
    digest = hashlib.blake2b(f"{seed}/{step}/{slot}".encode(), digest_size=4).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


# (step, slot, source, index). Sources: 0 = pairs, 1 = unpaired photos (labelled by a teacher), 2 = clean
# patches as identity pairs, 3 = synthetic degradations of clean patches -> the clean patch.
Key = tuple[int, int, int, int]
PAIRS, UNPAIRED, IDENTITY, DEGRADED = 0, 1, 2, 3


def _epoch_draw(n: int, k: int, seed: int) -> int:
    """The ``k``-th draw from epoch-wise seeded permutations of ``range(n)`` (each item once per epoch)."""
    epoch, pos = divmod(k, n)
    return int(torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919 * epoch))[pos])


class StepBatchSampler(Sampler[list[Key]]):
    """Yields, for steps ``start..stop-1``, this rank's share of the global batch as (step, slot, source, i).

    The first ``round(batch * unpaired_share)`` slots of every step come from the unpaired photos (when
    there are any), the next ``round(batch * identity_share)`` and ``round(batch * degraded_share)`` from
    the clean patches (as identity pairs, then degraded; when there are any), the rest from the pairs;
    each source is drawn epoch by epoch from its own seeded permutation.
    """

    def __init__(
        self,
        n_pairs: int,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world: int = 1,
        n_unpaired: int = 0,
        unpaired_share: float = 0.0,
        n_clean: int = 0,
        identity_share: float = 0.0,
        degraded_share: float = 0.0,
    ) -> None:
        if batch_size % world:
            raise DataError(f"run.batch_size {batch_size} is not divisible by the {world} processes")
        self.n, self.batch, self.seed = n_pairs, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.n_unpaired, self.n_clean = n_unpaired, n_clean
        self.k_unpaired = round(batch_size * unpaired_share) if n_unpaired else 0
        self.k_identity = round(batch_size * identity_share) if n_clean else 0
        self.k_degraded = round(batch_size * degraded_share) if n_clean else 0
        if self.k_unpaired + self.k_identity + self.k_degraded >= batch_size:
            raise DataError(
                f"a batch of {batch_size} leaves no slot for the real pairs",
                "lower data.unpaired_share, data.identity_share or data.degraded_share",
            )

    def key(self, step: int, slot: int) -> Key:
        start = 0
        for source, k, n in (
            (UNPAIRED, self.k_unpaired, self.n_unpaired),
            (IDENTITY, self.k_identity, self.n_clean),
            (DEGRADED, self.k_degraded, self.n_clean),
        ):
            if slot < start + k:
                return step, slot, source, _epoch_draw(n, step * k + slot - start, self.seed + source)
            start += k
        k_pairs = self.batch - start
        return step, slot, PAIRS, _epoch_draw(self.n, step * k_pairs + slot - start, self.seed)

    def __iter__(self) -> Iterator[list[Key]]:
        for step in range(self.start, self.stop):
            yield [self.key(step, s) for s in range(self.rank, self.batch, self.world)]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class TrainPatches(Dataset):
    """``dataset[(step, slot, source, i)]`` -> augmented ``(input, target, source)``, (3, P, P) in [0, 1].

    Source 0 is pair ``indices[i]`` of ``pairs``; source 1 is photo ``i`` of ``unpaired`` (a dataset of
    ``(photo, photo)``), whose target a teacher model provides in the training loop (the target is a copy
    of the input until then); source 2 is clean patch ``i`` of ``clean`` as its own target (identity);
    source 3 is a synthetic phone-like degradation (``data.synthetic.degrade``, after the crop) of clean
    patch ``i``, with the clean patch as target.

    Augmentations, identical for input and target: a random crop of ``patch`` pixels, a random flip and
    90-degree rotation (``flips``), and a mild exposure/white-balance change (``jitter``: gains drawn in
    [1 - jitter, 1 + jitter]) applied to both, so the phone-to-DSLR mapping is kept.
    """

    def __init__(
        self,
        pairs: PairDataset,
        indices: list[int],
        patch: int,
        seed: int,
        flips: bool = True,
        jitter: float = 0.0,
        unpaired: Dataset | None = None,
        clean: Dataset | None = None,
    ) -> None:
        self.pairs, self.indices, self.patch, self.seed = pairs, indices, patch, seed
        self.flips, self.jitter, self.unpaired, self.clean = flips, jitter, unpaired, clean

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor, int]:
        step, slot, source, k = key
        if source == UNPAIRED:
            assert self.unpaired is not None
            x, y = self.unpaired[k]
        elif source in (IDENTITY, DEGRADED):
            assert self.clean is not None
            x, y = self.clean[k]
        else:
            x, y = self.pairs[self.indices[k]]
        g = _generator(self.seed, step, slot)
        h, w = x.shape[-2:]
        p = min(self.patch, h, w)
        top = int(torch.randint(h - p + 1, (1,), generator=g))
        left = int(torch.randint(w - p + 1, (1,), generator=g))
        x, y = x[:, top : top + p, left : left + p], y[:, top : top + p, left : left + p]
        if source == DEGRADED:
            from dslrify.data.synthetic import degrade  # OpenCV and kornia: only when asked for

            x = degrade(y, g)
        if self.flips:
            turns = int(torch.randint(4, (1,), generator=g))
            if torch.rand(1, generator=g) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            x, y = x.rot90(turns, (-2, -1)), y.rot90(turns, (-2, -1))
        if self.jitter > 0:
            exposure = 1 + self.jitter * (2 * torch.rand(1, generator=g) - 1)
            balance = 1 + 0.5 * self.jitter * (2 * torch.rand(3, 1, 1, generator=g) - 1)
            gain = exposure * balance
            x, y = (x * gain).clamp(0, 1), (y * gain).clamp(0, 1)
        return x.contiguous(), y.contiguous(), source
