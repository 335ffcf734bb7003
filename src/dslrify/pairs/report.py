"""The review images and the report of ``dslrify pairs build``: ``OUT/report/index.html`` + ``report.json``.

Per aligned pair, two small JPEGs let a person check the registration at a glance:

* ``overlay``: a checkerboard of the phone photo and the warped DSLR photo; edges that run on without a
  step across the squares mean a good alignment (the colours differ: different cameras);
* ``diff``: the absolute difference of the two in grayscale, each normalised to zero mean and unit
  variance over the common region (so exposure and colour differences do not show), 1 standard
  deviation = 64 levels; misregistration shows as bright double edges. Dropped patches are outlined red.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dslrify.photo import from_array, write_photo

THUMB_WIDTH = 480  # px: small enough for a page of many pairs
_RED = (255, 40, 40)


def review_images(
    phone: np.ndarray,
    warped: np.ndarray,
    valid: np.ndarray,
    dropped: list[tuple[int, int, int]],
    width: int = THUMB_WIDTH,
) -> tuple[np.ndarray, np.ndarray]:
    """(overlay, diff), each (h, ``width``, 3) uint8, from the phone photo and the warped DSLR photo
    ((H, W, 3) uint8 each), the valid mask ((H, W) bool) and the dropped patches as (x, y, size)."""
    hh, ww = phone.shape[:2]
    cell = max(16, ww // 12)
    yy, xx = np.mgrid[0:hh, 0:ww]
    dslr_cell = ((yy // cell + xx // cell) % 2 == 1) & valid
    overlay = np.where(dslr_cell[..., None], warped, phone)

    a = _standardise(cv2.cvtColor(phone, cv2.COLOR_RGB2GRAY), valid)
    b = _standardise(cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY), valid)
    diff = np.clip(np.abs(a - b) * 64, 0, 255).astype(np.uint8)
    diff[~valid] = 0
    diff = np.ascontiguousarray(np.repeat(diff[..., None], 3, axis=2))
    thick = max(1, ww // width)
    for x, y, size in dropped:
        cv2.rectangle(diff, (x, y), (x + size - 1, y + size - 1), _RED, thick)
    scale = min(1.0, width / ww)
    out = (max(1, round(ww * scale)), max(1, round(hh * scale)))
    return (
        cv2.resize(overlay, out, interpolation=cv2.INTER_AREA),
        cv2.resize(diff, out, interpolation=cv2.INTER_AREA),
    )


def _standardise(gray: np.ndarray, valid: np.ndarray) -> np.ndarray:
    g = gray.astype(np.float32)
    sel = g[valid]
    if sel.size == 0:
        return g * 0
    return (g - sel.mean()) / max(float(sel.std()), 1e-3)


def write_image(path: Path, rgb: np.ndarray) -> None:
    """A review JPEG (quality 90), written through dslrify.photo (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_photo(path, from_array(np.ascontiguousarray(rgb))[0], quality=90)


def write_report(data: dict[str, Any], folder: Path) -> Path:
    """Write ``report.json`` and ``index.html`` (one row per photo pair) into ``folder``; returns the page."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    page = folder / "index.html"
    page.write_text(_html(data))
    return page


def _num(x: Any, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _html(data: dict[str, Any]) -> str:
    e = html.escape
    s = data["settings"]
    rows = []
    for p in data["pairs"]:
        a = p.get("alignment") or {}
        images = " ".join(
            f'<a href="{e(p[k])}"><img src="{e(p[k])}" width="240" alt="{k}"></a>'
            for k in ("overlay", "diff")
            if p.get(k)
        )
        status = f"{p['split']}" if p["ok"] else f"<b>rejected</b>: {e(p['reason'])}"
        if p["ok"] and p["reason"]:
            status += f" ({e(p['reason'])})"
        rows.append(
            f"<tr class='{'ok' if p['ok'] else 'bad'}'><td>{e(p['phone'])}<br>{e(p['dslr'])}</td>"
            f"<td>{status}</td><td>{a.get('inliers', 0)} / {a.get('matches', 0)}</td>"
            f"<td>{_num(a.get('reprojection_error'), '.2f')}</td><td>{_num(a.get('ecc'), '.3f')}</td>"
            f"<td>{p['kept']}</td><td>{p['dropped']}</td><td>{p['flat']}</td><td>{images}</td></tr>"
        )
    unpaired = "".join(f"<li>{e(u['side'])}: {e(u['file'])} — {e(u['why'])}</li>" for u in data["unpaired"])
    t = data["totals"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dslrify pairs: {e(s["name"])}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
tr.bad {{ background: #fdd; }} th {{ background: #eee; }}
</style></head><body>
<h1>Aligned phone / DSLR pairs: {e(s["name"])}</h1>
<p>Phone photos: {e(s["phone_dir"])}<br>DSLR photos: {e(s["dslr_dir"])}<br>
Matching by {e(s["match"])}; patches {s["patch"]} px, stride {s["stride"]} px; a patch is dropped when its
residual shift (phase correlation of the phone and warped DSLR patch) exceeds {s["max_patch_error"]} px or
its contents differ; flat patches (no measurable texture in either photo) are kept.</p>
<p>{t["aligned"]} pairs aligned, {t["rejected"]} rejected, {t["unpaired"]} photos without partner;
{t["train_patches"]} training and {t["test_patches"]} test patches, {t["dropped_patches"]} dropped.</p>
<p>Overlay: checkerboard of phone and warped DSLR photo. Difference: normalised grayscale difference,
dropped patches outlined in red.</p>
<table><tr><th>phone<br>DSLR</th><th>split</th><th>inliers / matches</th><th>reprojection error (px)</th>
<th>ECC</th><th>kept</th><th>dropped</th><th>flat</th><th>overlay, difference</th></tr>
{chr(10).join(rows)}
</table>
<h2>Photos without partner</h2><ul>{unpaired or "<li>none</li>"}</ul>
</body></html>
"""
