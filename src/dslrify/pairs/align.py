"""Align a DSLR photo to the phone photo of the same scene: features, then dense refinement.

1. Both photos become grayscale; the DSLR one is resized towards the phone's scale (its pixel count),
   the phone one to at most ``max_side`` pixels, so SIFT sees the scene at about the same size.
2. SIFT keypoints, Lowe's ratio test and a RANSAC homography (DSLR -> phone). Too few matches or
   inliers, a degenerate homography (mirrored, folded, extreme shear or scale) or too little overlap
   rejects the pair: a different scene, or a shot that cannot be registered by one homography.
3. ``cv2.findTransformECC`` (MOTION_HOMOGRAPHY) refines it on grayscale at up to ``ecc_side`` pixels,
   the DSLR photo first resized to the phone's scale. Both images are high-passed first (grayscale
   minus its Gaussian blur): ECC's correlation is invariant to gain and offset only, and the cameras'
   different tone curves otherwise pull it off by over a pixel in smooth regions such as the sky.
   A final correlation below ``min_ecc`` rejects the pair (another scene that shared some features).

Coordinates are pixel centres, (x, y); ``Alignment.homography`` maps DSLR pixels to phone pixels at full
resolution. :func:`local_error` measures the residual misalignment of one patch (see its docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

RATIO = 0.75  # Lowe's ratio test
MAX_FEATURES = 8000  # strongest SIFT keypoints kept per photo
MIN_INLIERS = 30  # chance agreement between unrelated photos stays far below this
RANSAC_PX = 3.0  # inlier threshold at the feature-matching scale
MIN_OVERLAP = 0.3  # share of the phone frame the DSLR photo must cover
MIN_ECC = 0.5  # high-passed ECC correlation after refinement: 0.7-0.97 aligned (noisy to clean), ~0 unrelated
MIN_SIMILARITY = 0.5  # correlation of a patch pair's contents (local_error)
HIGHPASS_SIGMA = 4.0  # px at the ECC scale: ECC runs on grayscale minus this Gaussian blur
MAX_ECC_JUMP = 10.0  # px at the ECC scale: ECC moving further than this from SIFT's answer has diverged


@dataclass
class Alignment:
    """The result of :func:`align_pair`. ``ok`` False: ``reason`` says why the pair was rejected."""

    homography: np.ndarray | None  # (3, 3) float64, DSLR (x, y, 1) -> phone (x, y, 1); None if none found
    matches: int = 0  # ratio-test matches
    inliers: int = 0  # RANSAC inliers among them
    reprojection_error: float = math.nan  # RMS px (phone frame, full resolution) of inliers, final H
    ecc: float = math.nan  # ECC correlation coefficient in [-1, 1] of the final H (high-passed grayscale)
    overlap: float = 0.0  # share of the phone frame in [0, 1] covered by the DSLR photo
    refined: bool = False  # ECC refinement converged and was kept
    ok: bool = False
    reason: str = ""

    def to_json(self) -> dict:
        """Plain-JSON fields (the homography as a nested list)."""
        return {
            "homography": None if self.homography is None else self.homography.tolist(),
            "matches": self.matches,
            "inliers": self.inliers,
            "reprojection_error": _finite(self.reprojection_error),
            "ecc": _finite(self.ecc),
            "overlap": round(self.overlap, 4),
            "refined": self.refined,
            "ok": self.ok,
            "reason": self.reason,
        }


def _finite(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(x) else None


def align_pair(
    phone: np.ndarray,
    dslr: np.ndarray,
    *,
    max_side: int = 1600,
    ecc_side: int = 1600,
    min_inliers: int = MIN_INLIERS,
    min_overlap: float = MIN_OVERLAP,
    min_ecc: float = MIN_ECC,
) -> Alignment:
    """Find the homography mapping ``dslr`` onto ``phone`` ((H, W, 3) uint8 RGB each, upright).

    ``max_side``/``ecc_side``: longest side, in pixels, of the phone photo for feature matching and for
    ECC (the DSLR photo follows at the same scale). Never raises for a bad pair: returns ``ok=False``.
    """
    pg, dg = _gray(phone, "phone"), _gray(dslr, "dslr")
    sp = min(1.0, max_side / max(pg.shape))
    sd = min(1.0, sp * math.sqrt(pg.size / dg.size))  # towards the phone's scale: SIFT then sees alike
    p_work, s_p = _resize(pg, sp)
    d_work, s_d = _resize(dg, sd)
    sift = cv2.SIFT.create(nfeatures=MAX_FEATURES)
    kp_p, des_p = sift.detectAndCompute(p_work, None)
    kp_d, des_d = sift.detectAndCompute(d_work, None)
    if des_p is None or des_d is None or len(kp_p) < 2 or len(kp_d) < 2:
        return Alignment(None, reason="no features found (blank or featureless photo?)")
    # FLANN's k-d trees: approximate, but ~10x faster than brute force at thousands of keypoints
    flann = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64})
    knn = flann.knnMatch(des_d, des_p, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < min_inliers:
        return Alignment(None, matches=len(good), reason=f"too few matches ({len(good)} < {min_inliers})")
    src = np.array([kp_d[m.queryIdx].pt for m in good], dtype=np.float64)
    dst = np.array([kp_p[m.trainIdx].pt for m in good], dtype=np.float64)
    h_work, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PX, maxIters=5000, confidence=0.999)
    inliers = int(mask.sum()) if mask is not None else 0
    result = Alignment(None, matches=len(good), inliers=inliers)
    if h_work is None or inliers < min_inliers:
        result.reason = f"too few inliers ({inliers} < {min_inliers}): a different scene?"
        return result
    h = np.linalg.inv(s_p) @ h_work @ s_d  # full-resolution DSLR -> full-resolution phone
    result.homography = h / h[2, 2]
    if bad := _degenerate(result.homography, pg.shape, dg.shape):
        result.reason = f"degenerate homography: {bad}"
        return result
    result.overlap = _overlap(result.homography, pg.shape, dg.shape)
    if result.overlap < min_overlap:
        result.reason = f"the photos overlap on only {result.overlap:.0%} of the phone frame"
        return result
    result.homography, result.ecc, result.refined = _refine_ecc(pg, dg, result.homography, ecc_side)
    inl = mask.ravel().astype(bool)
    full_src = _apply(np.linalg.inv(s_d), src[inl])
    full_dst = _apply(np.linalg.inv(s_p), dst[inl])
    err = np.linalg.norm(_apply(result.homography, full_src) - full_dst, axis=1)
    result.reprojection_error = float(np.sqrt(np.mean(err**2)))
    if not result.ecc >= min_ecc:  # also catches nan
        result.reason = f"ECC correlation {result.ecc:.2f} < {min_ecc} after alignment: a different scene?"
        return result
    result.ok, result.reason = True, "" if result.refined else "ECC did not converge; feature homography kept"
    return result


def warp_to_phone(
    dslr: np.ndarray, alignment: Alignment, phone_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``dslr`` ((h, w, 3) uint8) into the phone frame: ((H, W, 3) uint8, (H, W) bool valid).

    The DSLR photo is first shrunk with area averaging to about the phone's scale (a homography warp
    alone would alias when it minifies 2x), then warped with bicubic interpolation. ``valid`` is False
    where the DSLR photo does not reach, eroded by 3 px so no patch touches the interpolation seam.
    """
    if alignment.homography is None:
        raise ValueError(f"the pair has no homography ({alignment.reason})")
    h_out, w_out = int(phone_shape[0]), int(phone_shape[1])
    h = alignment.homography
    k = min(1.0, _local_scale(h, (w_out / 2, h_out / 2)))
    small, s = _resize(dslr, k) if k < 0.95 else (dslr, np.eye(3))
    m = h @ np.linalg.inv(s)
    flags = cv2.INTER_CUBIC
    warped = cv2.warpPerspective(small, m, (w_out, h_out), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    ones = np.full(small.shape[:2], 255, np.uint8)
    valid = cv2.warpPerspective(ones, m, (w_out, h_out), flags=cv2.INTER_NEAREST) == 255
    valid = cv2.erode(valid.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    return warped, valid


def grid_rms(h_est: np.ndarray, h_ref: np.ndarray, phone_shape: tuple[int, ...], n: int = 16) -> float:
    """RMS distance in phone pixels between two DSLR -> phone homographies, on an n x n grid of the phone
    frame: each phone point goes to the DSLR photo with ``h_ref``'s inverse and back with ``h_est``."""
    hh, ww = phone_shape[:2]
    xs, ys = np.meshgrid(np.linspace(0, ww - 1, n), np.linspace(0, hh - 1, n))
    p = np.stack([xs.ravel(), ys.ravel()], axis=1)
    back = _apply(h_est, _apply(np.linalg.inv(h_ref), p))
    return float(np.sqrt(np.mean(np.sum((back - p) ** 2, axis=1))))


def local_error(
    phone_patch: np.ndarray, dslr_patch: np.ndarray, min_similarity: float = MIN_SIMILARITY
) -> float:
    """Residual misalignment, in pixels, of a warped DSLR patch against its phone patch ((p, p, 3) uint8).

    Both patches become grayscale, lightly blurred (so the phone's blur and noise and the DSLR's
    sharpness compare alike) and zero-mean. Phase correlation (Hann window) gives their residual shift;
    after undoing it, their normalised cross-correlation must reach ``min_similarity`` (it is above 0.98
    for aligned synthetic pairs, below 0.45 when an object covers half the patch in one photo only).
    Returns the shift's length in px; ``inf`` when the contents differ (a moving car or person, leaves,
    parallax); ``nan`` for patches flat in both photos (sky, walls), whose shift is neither measurable
    nor visible and which are kept (``nan > threshold`` is False).
    """
    if phone_patch.shape != dslr_patch.shape:
        raise ValueError(f"patch shapes differ: {phone_patch.shape} and {dslr_patch.shape}")
    a, b = _patch_gray(phone_patch), _patch_gray(dslr_patch)
    if max(_texture(a), _texture(b)) < _FLAT:
        return math.nan
    (dx, dy), _ = cv2.phaseCorrelate(a, b, _hann(a.shape))
    shift = math.hypot(dx, dy)
    if shift > min(a.shape) / 4:  # far off (or unrelated): no overlap left to compare contents on
        return shift
    size = (a.shape[1], a.shape[0])
    shift_back = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    back = cv2.warpAffine(b, shift_back, size, flags=_BACK)  # b(x + d) ~ a(x)
    m = math.ceil(shift) + 2  # the border the shift left undefined
    a, back = a[m:-m, m:-m], back[m:-m, m:-m]
    a, back = a - a.mean(), back - back.mean()
    denom = float(np.linalg.norm(a) * np.linalg.norm(back))
    similarity = float((a * back).sum()) / denom if denom > 0 else 0.0
    return shift if similarity >= min_similarity else math.inf


# --- helpers ---------------------------------------------------------------------------------------

_BACK = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
_FLAT = 1.5  # mean gradient magnitude (8-bit levels per px) below which a blurred patch is flat


def _gray(img: np.ndarray, what: str) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 RGB array, got {img.shape} {img.dtype}")
    if min(img.shape[:2]) < 32:
        raise ValueError(f"{what} is {img.shape[1]} x {img.shape[0]}: too small to align")
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _resize(img: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``img`` resized by ``scale`` (area averaging when shrinking) and the 3x3 map old -> new pixels."""
    hh, ww = img.shape[:2]
    nw, nh = max(1, round(ww * scale)), max(1, round(hh * scale))
    if (nw, nh) == (ww, hh):
        return img, np.eye(3)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    sx, sy = nw / ww, nh / hh
    # pixel centres: x_new + 0.5 = (x_old + 0.5) * sx
    s = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
    return cv2.resize(img, (nw, nh), interpolation=interp), s


def _apply(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points through a 3x3 homography."""
    q = np.hstack([pts, np.ones((len(pts), 1))]) @ h.T
    return q[:, :2] / q[:, 2:3]


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """z component of the cross product of 2-D vectors (..., 2)."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _local_scale(h: np.ndarray, at: tuple[float, float]) -> float:
    """Phone pixels per DSLR pixel near the phone point ``at`` (sqrt of the Jacobian determinant)."""
    x_d = _apply(np.linalg.inv(h), np.array([at]))[0]
    eps = 1.0
    p0, px, py = _apply(h, np.array([x_d, x_d + [eps, 0], x_d + [0, eps]]))
    return math.sqrt(abs(float(_cross(px - p0, py - p0)))) / eps


def _degenerate(h: np.ndarray, phone_shape: tuple[int, ...], dslr_shape: tuple[int, ...]) -> str:
    """Why ``h`` cannot be a camera pair's homography, or "" when it is plausible."""
    if not np.all(np.isfinite(h)) or abs(np.linalg.det(h)) < 1e-12:
        return "not invertible"
    hh, ww = phone_shape[:2]
    corners = np.array([[0, 0, 1], [ww - 1, 0, 1], [ww - 1, hh - 1, 1], [0, hh - 1, 1]], float)
    q = corners @ np.linalg.inv(h).T  # phone corners in the DSLR photo
    if not (np.all(q[:, 2] > 0) or np.all(q[:, 2] < 0)):
        return "the phone frame folds over the horizon line"
    quad = q[:, :2] / q[:, 2:3]
    edges = np.roll(quad, -1, axis=0) - quad
    turns = _cross(edges, np.roll(edges, -1, axis=0))
    if not (np.all(turns > 0) or np.all(turns < 0)):
        return "mirrored or self-intersecting"
    a = h[:2, :2] - np.outer(h[:2, 2], h[2, :2])  # affine part at the origin, up to scale
    sv = np.linalg.svd(a / h[2, 2], compute_uv=False)
    if sv[0] / sv[1] > 4:
        return f"shear or perspective too strong (axis ratio {sv[0] / sv[1]:.1f})"
    scale = _local_scale(h, (ww / 2, hh / 2))
    if not 0.05 < scale < 20:
        return f"scale {scale:.3f} phone px per DSLR px is implausible"
    return ""


def _overlap(h: np.ndarray, phone_shape: tuple[int, ...], dslr_shape: tuple[int, ...]) -> float:
    """Share of the phone frame whose point, mapped into the DSLR photo, falls inside it (64x64 grid)."""
    hh, ww = phone_shape[:2]
    xs, ys = np.meshgrid(np.linspace(0, ww - 1, 64), np.linspace(0, hh - 1, 64))
    q = _apply(np.linalg.inv(h), np.stack([xs.ravel(), ys.ravel()], axis=1))
    inside = (q[:, 0] >= 0) & (q[:, 0] <= dslr_shape[1] - 1) & (q[:, 1] >= 0) & (q[:, 1] <= dslr_shape[0] - 1)
    return float(inside.mean())


def _refine_ecc(pg: np.ndarray, dg: np.ndarray, h: np.ndarray, side: int) -> tuple[np.ndarray, float, bool]:
    """ECC refinement of ``h`` (full resolution): (homography, ECC correlation, converged)."""
    se = min(1.0, side / max(pg.shape))
    template, s_t = _resize(pg, se)
    k = min(1.0, se * _local_scale(h, (pg.shape[1] / 2, pg.shape[0] / 2)))
    image, s_i = _resize(dg, k)  # the DSLR photo at the template's scale
    # High-pass both (grayscale minus its Gaussian blur): the cameras' different tone curves would
    # otherwise bias ECC in smooth regions (sky), where it trades geometry for brightness (> 1 px seen).
    template, image = _highpass(template), _highpass(image)
    w0 = s_i @ np.linalg.inv(h) @ np.linalg.inv(s_t)  # ECC's warp: template pixels -> image pixels
    w0 = (w0 / w0[2, 2]).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-6)
    mask = np.full(image.shape, 255, np.uint8)  # ECC warps it with the image: uncovered pixels drop out
    refined = False
    try:
        _, w = cv2.findTransformECC(template, image, w0.copy(), cv2.MOTION_HOMOGRAPHY, criteria, mask, 5)
        h_new = np.linalg.inv(s_t) @ np.linalg.inv(w.astype(np.float64)) @ s_i
        h_new /= h_new[2, 2]
        # A jump far from the feature homography means ECC slid into another optimum: keep SIFT's.
        if np.all(np.isfinite(h_new)) and grid_rms(h_new, h, pg.shape) * se < MAX_ECC_JUMP:
            h, w0, refined = h_new, w.astype(np.float32), True
    except cv2.error:
        pass  # did not converge: keep the feature homography, say so in the reason
    return h, _ecc_score(template, image, w0), refined


def _highpass(gray: np.ndarray) -> np.ndarray:
    g = gray.astype(np.float32)
    return g - cv2.GaussianBlur(g, (0, 0), HIGHPASS_SIGMA)


def _ecc_score(template: np.ndarray, image: np.ndarray, w: np.ndarray) -> float:
    """Zero-mean normalised correlation of ``template`` and ``image`` warped by ``w``, on covered pixels."""
    size = (template.shape[1], template.shape[0])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(image, w, size, flags=flags)
    cover = cv2.warpPerspective(np.ones_like(image), w, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    sel = cover > 0
    if sel.sum() < 100:
        return math.nan
    a, b = template[sel] - template[sel].mean(), warped[sel] - warped[sel].mean()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 0 else math.nan


def _patch_gray(patch: np.ndarray) -> np.ndarray:
    g: np.ndarray = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g = cv2.GaussianBlur(g, (0, 0), 1.0)
    return g - g.mean()


def _texture(g: np.ndarray) -> float:
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0) / 8, cv2.Sobel(g, cv2.CV_32F, 0, 1) / 8
    return float(np.mean(np.hypot(gx, gy)))


def _hann(shape: tuple[int, ...]) -> np.ndarray:
    return cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)
