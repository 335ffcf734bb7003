"""Your own training pairs: align phone and DSLR photos of the same scenes and cut DPED-layout patches.

``build_dataset`` (the library behind ``dslrify pairs build``) pairs the photos of two folders, aligns
each DSLR photo to its phone photo with :func:`align_pair`, warps it into the phone frame
(:func:`warp_to_phone`), drops patches whose residual misalignment (:func:`local_error`) is too large,
and writes DPED's folder layout plus a report. See docs/pairs.md for the whole recipe.
"""

from __future__ import annotations

from dslrify.pairs.align import Alignment, align_pair, grid_rms, local_error, warp_to_phone
from dslrify.pairs.build import (
    MATCH_MODES,
    MAX_PATCH_ERROR,
    BuildReport,
    PairResult,
    build_dataset,
    capture_time,
    match_photos,
)

__all__ = [
    "MATCH_MODES",
    "MAX_PATCH_ERROR",
    "Alignment",
    "BuildReport",
    "PairResult",
    "align_pair",
    "build_dataset",
    "capture_time",
    "grid_rms",
    "local_error",
    "match_photos",
    "warp_to_phone",
]
