"""Match extraction from a full confidence matrix, in numpy.

Used for models that output the L0 x L1 dual-softmax matrix instead of matches (the
released reference ONNX); models from ``coarse-loftr export`` do the same inside the graph.
Coordinates follow ``coarse_loftr_train.export``: cell (row, col) is the model-input pixel
(col * stride, row * stride).
"""

from __future__ import annotations

import numpy as np

from .base import RawMatches


def cell_coordinates(grid: tuple[int, int], stride: int) -> np.ndarray:
    """Model-input pixel (x, y) of every cell of a (columns, rows) grid, row-major, float32 (L, 2)."""
    columns, rows = grid
    ys, xs = np.mgrid[0:rows, 0:columns]
    return (np.stack([xs.ravel(), ys.ravel()], axis=1) * stride).astype(np.float32)


def inner_cells(grid: tuple[int, int], border: int) -> np.ndarray:
    """Bool (L,): cells at least ``border`` cells away from the grid edge."""
    columns, rows = grid
    mask = np.zeros((rows, columns), bool)
    mask[border : rows - border, border : columns - border] = True
    return mask.ravel()


def extract_matches(
    confidence: np.ndarray,
    grid0: tuple[int, int],
    grid1: tuple[int, int],
    stride: int,
    threshold: float,
    border: int = 0,
) -> RawMatches:
    """Mutual nearest neighbours above ``threshold`` of a confidence matrix (L0, L1) or (1, L0, L1)."""
    conf = np.asarray(confidence, np.float32).reshape(confidence.shape[-2], confidence.shape[-1])
    best_column = conf.argmax(axis=1)
    best_row = conf.argmax(axis=0)
    rows = np.arange(conf.shape[0])
    scores = conf[rows, best_column]
    keep = (best_row[best_column] == rows) & (scores > threshold)
    keep &= inner_cells(grid0, border) & inner_cells(grid1, border)[best_column]
    cells0 = rows[keep]
    cells1 = best_column[keep]
    scores = scores[keep]
    order = np.argsort(-scores, kind="stable")
    cells0, cells1, scores = cells0[order], cells1[order], scores[order]
    return RawMatches(
        keypoints0=cell_coordinates(grid0, stride)[cells0],
        keypoints1=cell_coordinates(grid1, stride)[cells1],
        confidence=scores.astype(np.float32),
        cells0=cells0.astype(np.int32),
        cells1=cells1.astype(np.int32),
    )
