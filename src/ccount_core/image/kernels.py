"""Small Numba image kernels shared by the ellipse fit and the preparation.

Each takes and returns plain arrays (float32 images ``(rows, cols)`` unless stated). Kernels
that call one another (the 5-point median and its fused block mean) stay in this one file:
Numba's disk cache checks only the loaded function's own file.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "block_mean",
    "finite_range",
    "gaussian_weights",
    "median5",
    "median5_block_mean",
    "robust_plane",
    "separable_smooth",
]


@nb.njit(cache=True, nogil=True)
def finite_range(img):  # pragma: no cover - numba
    """``(number of non-finite pixels, min, max of the finite ones)`` of a 2-D float32 image,
    in one pass."""
    n_bad = 0
    lo, hi = np.inf, -np.inf
    for v in img.ravel():
        if not np.isfinite(v):
            n_bad += 1
        else:
            lo = min(lo, v)
            hi = max(hi, v)
    return n_bad, float(lo), float(hi)


def median5(img: np.ndarray) -> np.ndarray:
    """5-point cross median (footprint [[0,1,0],[1,1,1],[0,1,0]]), edges replicated.

    The median of five is the median of the centre and the middle two of the four
    neighbours (a 6-comparison network), in one Numba pass. ``img`` is 2-D; returns float32.
    """
    return _median5(np.ascontiguousarray(img, dtype=np.float32))


@nb.njit(cache=True, nogil=True, inline="always")
def median5_at(img, i, j, h, w):  # pragma: no cover - numba
    """The 5-point cross median at pixel ``(i, j)`` of ``img`` ``(h, w)``, edges replicated."""
    im, ip = max(i - 1, 0), min(i + 1, h - 1)
    jm, jp = max(j - 1, 0), min(j + 1, w - 1)
    n, s, we, e = img[im, j], img[ip, j], img[i, jm], img[i, jp]
    x = max(min(n, s), min(we, e))
    y = min(max(n, s), max(we, e))
    return max(min(x, y), min(max(x, y), img[i, j]))


@nb.njit(cache=True, nogil=True)
def _median5(img: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    h, w = img.shape
    out = np.empty((h, w), dtype=np.float32)
    for i in range(h):
        for j in range(w):
            out[i, j] = median5_at(img, i, j, h, w)
    return out


@nb.njit(cache=True, nogil=True)
def median5_block_mean(img, k):  # pragma: no cover - numba
    """``block_mean(median5(img), k)`` in one pass, with the same float32 arithmetic."""
    h, w = img.shape
    hb, wb = h // k, w // k
    out = np.zeros((hb, wb), dtype=np.float32)
    for i in range(hb):
        for di in range(k):
            r = i * k + di
            for j in range(wb):
                acc = np.float32(0.0)
                for dj in range(k):
                    acc += median5_at(img, r, j * k + dj, h, w)
                out[i, j] += acc
    out *= np.float32(1.0 / (k * k))
    return out


def block_mean(img: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``k x k`` blocks of a float32 2-D image (edge remainder dropped)."""
    if k == 1:
        return img
    return _block_mean(np.ascontiguousarray(img, dtype=np.float32), k)


@nb.njit(cache=True, nogil=True)
def _block_mean(img: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - numba
    h, w = img.shape[0] // k, img.shape[1] // k
    out = np.zeros((h, w), dtype=np.float32)
    for i in range(h):
        for di in range(k):
            row = img[i * k + di]
            for j in range(w):
                acc = np.float32(0.0)
                for dj in range(k):
                    acc += row[j * k + dj]
                out[i, j] += acc
    out *= np.float32(1.0 / (k * k))
    return out


@nb.njit(cache=True, nogil=True)
def robust_plane(z, rr, cc, fits, min_keep):  # pragma: no cover - numba
    """Least-squares plane ``(p0, p1, p2)``, ``z ≈ p0 + p1 rr + p2 cc`` (float64 arrays),
    fitted up to ``fits`` times, each time to the points of the last fit within 3σ (σ:
    1.4826 × their median absolute residual); it stops when no point is dropped or fewer
    than ``min_keep`` would remain."""
    n = z.size
    keep = np.ones(n, dtype=np.bool_)
    p = np.zeros(3)
    for _ in range(fits):
        a = np.zeros((3, 3))
        rhs = np.zeros(3)
        for i in range(n):
            if keep[i]:
                x, y = rr[i], cc[i]
                a[0, 0] += 1.0
                a[0, 1] += x
                a[0, 2] += y
                a[1, 1] += x * x
                a[1, 2] += x * y
                a[2, 2] += y * y
                rhs[0] += z[i]
                rhs[1] += x * z[i]
                rhs[2] += y * z[i]
        a[1, 0], a[2, 0], a[2, 1] = a[0, 1], a[0, 2], a[1, 2]
        p = np.linalg.solve(a, rhs)
        res = np.abs(z - (p[0] + p[1] * rr + p[2] * cc))
        sigma = 1.4826 * np.median(res[keep])
        new_keep = res <= 3.0 * sigma + 1e-12
        if new_keep.sum() < min_keep or np.all(new_keep == keep):
            break
        keep = new_keep
    return p


def gaussian_weights(sigma: float, truncate: float = 3.0) -> np.ndarray:
    """Normalised 1-D Gaussian weights of radius ``int(truncate * sigma + 0.5)`` px, as
    ``scipy.ndimage.gaussian_filter`` builds them."""
    x = np.arange(-int(truncate * sigma + 0.5), int(truncate * sigma + 0.5) + 1)
    w = np.exp(-0.5 / (sigma * sigma) * x.astype(np.float64) ** 2)
    return w / w.sum()


@nb.njit(cache=True, nogil=True)
def separable_smooth(img, weights):  # pragma: no cover - numba
    """Separable smoothing of a float32 image by symmetric ``weights`` along rows, then
    columns, edges replicated (``scipy.ndimage.gaussian_filter``, mode "nearest"): float64
    sums, float32 after each pass."""
    h, w = img.shape
    r = weights.size // 2
    tmp = np.empty((h, w), dtype=np.float32)
    for i in range(h):
        for j in range(w):
            acc = np.float64(img[i, j]) * weights[r]
            for t in range(1, r + 1):
                acc += (np.float64(img[max(i - t, 0), j]) + img[min(i + t, h - 1), j]) * weights[
                    r + t
                ]
            tmp[i, j] = acc
    out = np.empty((h, w), dtype=np.float32)
    for i in range(h):
        for j in range(w):
            acc = np.float64(tmp[i, j]) * weights[r]
            for t in range(1, r + 1):
                acc += (np.float64(tmp[i, max(j - t, 0)]) + tmp[i, min(j + t, w - 1)]) * weights[
                    r + t
                ]
            out[i, j] = acc
    return out
