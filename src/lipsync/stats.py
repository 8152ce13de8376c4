"""The one Pearson correlation: how well a mouth curve follows a sound curve (the face choice of
``lipsync.infer``, the synthetic world's sync and leak scores)."""

from __future__ import annotations

import numpy as np


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two (T,) curves; 0.0 when either is constant or shorter than 2 (no timing to compare).

    Raises:
        ValueError: the curves differ in length.
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"need two curves of equal length, got {a.shape} and {b.shape}")
    if a.size < 2:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 1e-12 else 0.0
