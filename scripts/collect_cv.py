"""Collect `dslrify cv` results of the candidate recipes into docs/models/cv-results.{json,md}.

Adds, for every fold, the untrained reference models (identity, DPED's and PPCN's released models)
scored on the same held-out pairs, so each candidate is compared pair for pair with what it must beat.

    python scripts/collect_cv.py runs/gpu2/runs runs/gpu3/runs --dped runs/dped-iphone --ppcn runs/ppcn-teacher \
        --student runs/ppcn-student
    python scripts/collect_cv.py runs --merge --shipped default=H paper=A fast=fast-guided   # add runs/cv-*
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from torch.utils.data import Subset

from dslrify.baselines import auto_levels
from dslrify.data import open_pairs
from dslrify.evaluate import evaluate
from dslrify.train.sampling import split_indices
from dslrify.zoo import resolve_model

CANDIDATES = {
    "A": "paper: residual U-Net from scratch, L1 + 0.5 SSIM, lr 2e-3 cosine, batch 32, 800 steps",
    "B": "A + exposure/colour jitter 0.1 + EMA 0.995",
    "S": "A initialised from 1000 steps of synthetic-degradation pretraining on ../shared/data/photos",
    "C": "U-Net distilled: PPCN teacher labels the 100 unpaired phone photos (50 % of each batch), 1200 steps",
    "D": "C with 75 % unpaired and the teacher blended 50 % into the real targets",
    "G": "D with a U-Net of width 32 (lr 2e-3): diverged in two folds",
    "E": "DPED's released iPhone generator fine-tuned on the pairs: L1 + 0.5 SSIM, Adam 5e-5, 300 steps",
    "E2": "E with EMA 0.98, 400 steps",
    "F": "DPED's generator fine-tuned with PPCN-teacher distillation on the unpaired photos (50 %), 600 steps",
    "F2": "F with 75 % unpaired and the teacher blended 50 % into the real targets",
    "H": "PPCN's released teacher fine-tuned on the pairs, its own output blended 50 % into the targets, "
    "Adam 1e-4, 400 steps",
    "H-seed1": "H with seed 1 (other folds, other sampling)",
    "H-seed2": "H with seed 2 (other folds, other sampling)",
    "fastD": "`bilateral` architecture (HDRNet-style grid, the first `fast` model), distilled like D "
    "(75 % unpaired, blend 0.5), 1500 steps, batch 16",
    "fastP": "`bilateral` architecture on the real pairs only, 1500 steps, batch 16",
    "fast-guided": "`guided` architecture (PPCN teacher on a <=384 px thumbnail + colour guided filter), "
    "recipe H trained end to end through the filter, 200 steps (configs/fast.yaml)",
}


def fold_references(
    dped: str, ppcn: str, student: str, folds: int = 3, seed: int = 0
) -> list[dict[str, list[float]]]:
    pairs = open_pairs("../shared/data/dped", "iphone", "train")
    models = {
        "identity": lambda x: x,
        "auto-levels": auto_levels,
        "dped-official": resolve_model(dped)[0],
        "ppcn-teacher": resolve_model(ppcn)[0],
        "ppcn-student": resolve_model(student)[0],
    }
    out = []
    for fold in range(folds):
        _, val = split_indices(len(pairs), seed, 0.1, folds, fold)
        result = evaluate(models, Subset(pairs, val), batch_size=len(val))
        out.append({s.model: [s.psnr, s.ssim] for s in result.summaries})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("roots", nargs="+", type=Path)
    ap.add_argument("--dped", default="runs/dped-iphone")
    ap.add_argument("--ppcn", default="runs/ppcn-teacher")
    ap.add_argument("--student", default="runs/ppcn-student")
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/models"))
    ap.add_argument("--shipped", nargs="*", default=["default=H", "paper=A"], help="MODEL=CANDIDATE")
    ap.add_argument(
        "--merge", action="store_true", help="keep the candidates already in OUT/cv-results.json, add these"
    )
    a = ap.parse_args()
    torch.set_num_threads(2)
    refs = fold_references(a.dped, a.ppcn, a.student)
    table = {
        "protocol": "3-fold CV on the 198 DPED iPhone training pairs (seed 0); per fold, validation PSNR/SSIM "
        "(8-bit protocol) at the best validation step ('best', optimistic) and at the last step ('final')",
        "references": {},
        "candidates": {},
    }
    for name in refs[0]:
        psnr = [r[name][0] for r in refs]
        ssim = [r[name][1] for r in refs]
        table["references"][name] = {
            "psnr": psnr,
            "ssim": ssim,
            "psnr_mean": statistics.fmean(psnr),
            "ssim_mean": statistics.fmean(ssim),
        }
    if a.merge:
        table["candidates"] = json.loads((a.out / "cv-results.json").read_text())["candidates"]
        for name, entry in table["candidates"].items():
            entry["recipe"] = CANDIDATES.get(name, entry["recipe"])
    refs_by_seed = {0: refs}
    for root in a.roots:
        for cv_json in sorted(root.glob("cv-*/cv.json")):
            name = cv_json.parent.name.removeprefix("cv-")
            cv = json.loads(cv_json.read_text())
            rows = cv["folds"]
            seed = cv["config"]["run"]["seed"]
            if seed not in refs_by_seed:
                refs_by_seed[seed] = fold_references(a.dped, a.ppcn, a.student, seed=seed)
            dped_psnr = [r["dped-official"][0] for r in refs_by_seed[seed]]
            dped_ssim = [r["dped-official"][1] for r in refs_by_seed[seed]]
            teacher_psnr = [r["ppcn-teacher"][0] for r in refs_by_seed[seed]]
            entry = {
                "recipe": CANDIDATES.get(name, ""),
                "folds": [
                    {k: r[k] for k in ("fold", "best_step", "psnr", "ssim", "final_psnr", "final_ssim")}
                    for r in rows
                ],
            }
            for key in ("psnr", "ssim", "final_psnr", "final_ssim"):
                vals = [r[key] for r in rows]
                entry[key] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals)}
            entry["final_vs_dped"] = {
                "psnr": [r["final_psnr"] - d for r, d in zip(rows, dped_psnr, strict=True)],
                "ssim": [r["final_ssim"] - d for r, d in zip(rows, dped_ssim, strict=True)],
            }
            entry["final_vs_ppcn_teacher_psnr"] = [
                r["final_psnr"] - t for r, t in zip(rows, teacher_psnr, strict=True)
            ]
            entry["seed"] = seed
            table["candidates"][name] = entry
    table["shipped"] = dict(item.split("=", 1) for item in a.shipped)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "cv-results.json").write_text(json.dumps(table, indent=2) + "\n")
    lines = [
        "# Cross-validated recipes for `default`",
        "",
        table["protocol"] + ".",
        "",
        "| recipe | what | PSNR best (mean ± std) | SSIM best | PSNR final | SSIM final | final − DPED per fold (dB) | final − PPCN teacher per fold (dB) |",
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
            f"| {name} | {e['recipe']} | {e['psnr']['mean']:.2f} ± {e['psnr']['std']:.2f} | {e['ssim']['mean']:.4f} | "
            f"{e['final_psnr']['mean']:.2f} ± {e['final_psnr']['std']:.2f} | {e['final_ssim']['mean']:.4f} | {diffs} | {vs_t} |"
        )
    (a.out / "cv-results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
