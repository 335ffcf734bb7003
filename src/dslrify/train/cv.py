"""k-fold cross-validation with the same trainer: the honest way to choose a recipe on few pairs.

Fold ``k`` holds out every ``folds``-th pair of a seeded permutation of the training pairs; the test
split is never touched. Each fold's figure is its ``best`` checkpoint's validation PSNR/SSIM (the step is
chosen on the held-out fold itself, which is optimistic by a little; ``final_*`` report the last step
too, which is not).

``collect_cv`` gathers the ``cv.json`` of several candidate recipes into one comparison
(``docs/models/cv-results.{json,md}``), next to the untrained reference models (identity, auto-levels,
DPED's and PPCN's released models) scored on the same held-out pairs of every fold.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dslrify.errors import DslrifyError
from dslrify.files import atomic_path
from dslrify.train.config import load_config
from dslrify.train.trainer import Event, Trainer, default_run_dir


def run_cv(
    config_path: str | Path,
    folds: int,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    on_event: Event | None = None,
) -> dict[str, Any]:
    """Train one run per fold under ``out`` (default ``runs/NAME-cv-DATE``); write and return ``cv.json``.

    ``overrides`` apply to every fold, with ``{fold}`` replaced by the fold's number.
    """
    if folds < 2:
        raise DslrifyError(f"--folds must be at least 2, got {folds}")
    base = load_config(config_path, overrides)
    stamp = default_run_dir(base)
    root = Path(out) if out else stamp.with_name(stamp.name.replace(base.name, f"{base.name}-cv", 1))
    rows: list[dict[str, Any]] = []
    for fold in range(folds):
        extra = [
            f"data.folds={folds}",
            f"data.fold={fold}",
            f"run.dir={root / f'fold{fold}'}",
            "data.val_split=holdout",
        ]
        # "{fold}" in an override names this fold: a second stage starts from the same fold's first stage
        # (model.init=runs/cv-base/fold{fold}/last), so no stage ever saw the held-out pairs.
        per_fold = [o.replace("{fold}", str(fold)) for o in overrides or []]
        config = load_config(config_path, [*per_fold, *extra])
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
        vals = [float(r[key]) for r in rows if r[key] is not None]
        summary[key] = {
            "mean": statistics.fmean(vals),
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        }
    root.mkdir(parents=True, exist_ok=True)
    _write_text(root / "cv.json", json.dumps(summary, indent=2) + "\n")
    summary["path"] = str(root / "cv.json")
    return summary


PROTOCOL = (
    "3-fold CV on the 198 DPED iPhone training pairs (seed 0); per fold, validation PSNR/SSIM "
    "(8-bit protocol) at the best validation step ('best', optimistic) and at the last step ('final')"
)
FOLDS = 3
# shipped model -> its candidate
SHIPPED = {"default": "H", "balanced": "balanced-detail", "paper": "A", "fast": "fast-guided"}


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def fold_references(
    data: str | Path, models: Mapping[str, str | Path], seed: int = 0, phone: str = "iphone"
) -> list[dict[str, list[float]]]:
    """Per fold of ``run_cv``'s split (3 folds, ``seed``): ``{name: [psnr, ssim]}`` of each reference model.

    ``models`` maps a name to a model name or checkpoint folder; identity and auto-levels come first.
    """
    from torch.utils.data import Subset

    from dslrify.baselines import auto_levels
    from dslrify.data import open_pairs
    from dslrify.evaluate import evaluate
    from dslrify.train.sampling import split_indices
    from dslrify.zoo import resolve_model

    pairs = open_pairs(data, phone, "train")
    loaded = {"identity": lambda x: x, "auto-levels": auto_levels}
    loaded.update({name: resolve_model(path)[0] for name, path in models.items()})
    out = []
    for fold in range(FOLDS):
        _, val = split_indices(len(pairs), seed, 0.1, FOLDS, fold)
        result = evaluate(loaded, Subset(pairs, val), batch_size=len(val))
        out.append({s.model: [s.psnr, s.ssim] for s in result.summaries})
    return out


def assignments(items: list[str]) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` -> ``{NAME: VALUE}`` (command-line options such as ``--shipped default=H``)."""
    bad = [item for item in items if "=" not in item]
    if bad:
        raise DslrifyError(f"expected NAME=VALUE, got {bad[0]!r}", "for example --shipped default=H")
    return dict(item.split("=", 1) for item in items)


def _candidate(cv: dict[str, Any], refs: list[dict[str, list[float]]], recipe: str) -> dict[str, Any]:
    """One recipe's entry: its folds, mean ± std, and its last step against DPED and PPCN's teacher."""
    rows = cv["folds"]
    entry: dict[str, Any] = {
        "recipe": recipe,
        "folds": [
            {k: r[k] for k in ("fold", "best_step", "psnr", "ssim", "final_psnr", "final_ssim")} for r in rows
        ],
    }
    for key in ("psnr", "ssim", "final_psnr", "final_ssim"):
        vals = [r[key] for r in rows]
        entry[key] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals)}
    entry["final_vs_dped"] = {
        metric: [r[f"final_{metric}"] - ref["dped-official"][i] for r, ref in zip(rows, refs, strict=True)]
        for i, metric in enumerate(("psnr", "ssim"))
    }
    entry["final_vs_ppcn_teacher_psnr"] = [
        r["final_psnr"] - ref["ppcn-teacher"][0] for r, ref in zip(rows, refs, strict=True)
    ]
    entry["seed"] = cv["config"]["run"]["seed"]
    return entry


def collect_cv(
    roots: Sequence[str | Path],
    data: str | Path,
    references: Mapping[str, str | Path],
    out: str | Path,
    shipped: dict[str, str] | None = None,
    merge: bool = False,
    recipes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``OUT/cv-results.json`` and ``.md`` from every ``ROOT/cv-NAME/cv.json``; return the table.

    ``references`` must name ``dped-official``, ``ppcn-teacher`` and ``ppcn-student`` (model folders);
    ``shipped`` maps a shipped model to its candidate (default ``SHIPPED``); ``recipes`` describes
    candidates by name (a candidate already in the table keeps its description otherwise).
    With ``merge``, the candidates already in ``OUT/cv-results.json`` are kept (same names are replaced).
    """
    missing = {"dped-official", "ppcn-teacher", "ppcn-student"} - set(references)
    if missing:
        raise DslrifyError(
            f"reference models missing: {', '.join(sorted(missing))}", "pass a folder for each"
        )
    out = Path(out)
    refs_by_seed = {0: fold_references(data, references)}
    table: dict[str, Any] = {"protocol": PROTOCOL, "references": {}, "candidates": {}}
    for name in refs_by_seed[0][0]:
        psnr, ssim = ([r[name][i] for r in refs_by_seed[0]] for i in (0, 1))
        table["references"][name] = {
            "psnr": psnr,
            "ssim": ssim,
            "psnr_mean": statistics.fmean(psnr),
            "ssim_mean": statistics.fmean(ssim),
        }
    recipes = recipes or {}
    if merge:
        table["candidates"] = json.loads((out / "cv-results.json").read_text())["candidates"]
        for name in recipes.keys() & table["candidates"].keys():
            table["candidates"][name]["recipe"] = recipes[name]
    for root in roots:
        for cv_json in sorted(Path(root).glob("cv-*/cv.json")):
            name = cv_json.parent.name.removeprefix("cv-")
            cv = json.loads(cv_json.read_text())
            seed = cv["config"]["run"]["seed"]
            if seed not in refs_by_seed:
                refs_by_seed[seed] = fold_references(data, references, seed=seed)
            known = table["candidates"].get(name, {}).get("recipe", "")
            table["candidates"][name] = _candidate(cv, refs_by_seed[seed], recipes.get(name, known))
    table["shipped"] = shipped or SHIPPED
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "cv-results.json", json.dumps(table, indent=2) + "\n")
    _write_text(out / "cv-results.md", cv_markdown(table))
    return table


def cv_markdown(table: dict[str, Any]) -> str:
    """The table of ``collect_cv`` as Markdown: references first, then every candidate."""
    lines = [
        "# Cross-validated recipes for `default`",
        "",
        table["protocol"] + ".",
        "",
        "| recipe | what | PSNR best (mean ± std) | SSIM best | PSNR final | SSIM final "
        "| final − DPED per fold (dB) | final − PPCN teacher per fold (dB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in table["references"].items():
        lines.append(
            f"| {name} | released / no training | {r['psnr_mean']:.2f} | {r['ssim_mean']:.4f} | "
            f"{r['psnr_mean']:.2f} | {r['ssim_mean']:.4f} | | |"
        )
    for name, e in table["candidates"].items():
        diffs = ", ".join(f"{d:+.2f}" for d in e["final_vs_dped"]["psnr"])
        vs_t = ", ".join(f"{d:+.2f}" for d in e["final_vs_ppcn_teacher_psnr"])
        lines.append(
            f"| {name} | {e['recipe']} | {e['psnr']['mean']:.2f} ± {e['psnr']['std']:.2f} "
            f"| {e['ssim']['mean']:.4f} | {e['final_psnr']['mean']:.2f} ± {e['final_psnr']['std']:.2f} "
            f"| {e['final_ssim']['mean']:.4f} | {diffs} | {vs_t} |"
        )
    return "\n".join(lines) + "\n"
