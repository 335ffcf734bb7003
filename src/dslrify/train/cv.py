"""k-fold cross-validation with the same trainer: the honest way to choose a recipe on few pairs.

Fold ``k`` holds out every ``folds``-th pair of a seeded permutation of the training pairs; the test
split is never touched. Each fold's figure is its ``best`` checkpoint's validation PSNR/SSIM (the step is
chosen on the held-out fold itself, which is optimistic by a little; ``final_*`` report the last step
too, which is not).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from dslrify.train.config import load_config
from dslrify.train.trainer import Event, Trainer, default_run_dir


def run_cv(
    config_path: str | Path,
    folds: int,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    on_event: Event | None = None,
) -> dict[str, Any]:
    """Train one run per fold under ``out`` (default ``runs/NAME-cv-DATE``); write and return ``cv.json``."""
    if folds < 2:
        from dslrify.errors import DslrifyError

        raise DslrifyError(f"--folds must be at least 2, got {folds}")
    base = load_config(config_path, overrides)
    stamp = default_run_dir(base)
    root = Path(out) if out else stamp.with_name(stamp.name.replace(base.name, f"{base.name}-cv", 1))
    rows = []
    for fold in range(folds):
        extra = [
            f"data.folds={folds}",
            f"data.fold={fold}",
            f"run.dir={root / f'fold{fold}'}",
            "data.val_split=holdout",
        ]
        config = load_config(config_path, [*(overrides or []), *extra])
        if on_event:
            on_event("fold", fold=fold, folds=folds)
        trainer = Trainer(config, on_event=on_event)
        result = trainer.fit()
        rows.append(
            {
                "fold": fold,
                "best_step": result.best_step,
                "psnr": result.best.get("val_psnr"),
                "ssim": result.best.get("val_ssim"),
                "final_psnr": trainer.last_val.get("val_psnr"),
                "final_ssim": trainer.last_val.get("val_ssim"),
                "final_identity_psnr": trainer.last_val.get("val_identity_psnr"),
                "final_identity_ssim": trainer.last_val.get("val_identity_ssim"),
                "n_val": len(trainer.val_set) if trainer.val_set is not None else 0,
                "run_dir": str(result.run_dir),
            }
        )
    summary: dict[str, Any] = {"config": base.to_dict(), "folds": rows}
    for key in ("psnr", "ssim", "final_psnr", "final_ssim", "final_identity_psnr", "final_identity_ssim"):
        vals = [r[key] for r in rows if r[key] is not None]
        summary[key] = {
            "mean": statistics.fmean(vals),
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        }
    root.mkdir(parents=True, exist_ok=True)
    (root / "cv.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["path"] = str(root / "cv.json")
    return summary
