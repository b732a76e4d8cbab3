"""Training pairs from cached teacher labels (``coarse_loftr_train.labels``).

Each sample is a labelled pair of real images, both cropped to the model's aspect ratio and
resized to the model input: image 0 and image 1 get crops of their own size and place, so the
scale between the two views changes by up to ``1 / crop_scale[0]`` beyond the footage's own
(forward motion at keyframe distance grows the scene 1.3-2x; the crops add both ways).

Targets (the layout of ``coarse_loftr_train.datasets``): the coarse cell of image 0 nearest
to a teacher keypoint lands where its partner lies, shifted back by the keypoint's offset
from the cell centre (locally a translation); that landing point gives the cell of image 1
and the sub-pixel ``offsets1``. A cell keeps the teacher match closest to its centre, and a
cell of image 1 claimed twice keeps the closer claim. Cells without a teacher match are **unknown** (``cells1 == UNKNOWN``), not "no match":
the coarse loss leaves their rows out of its negative term. With ``negatives``, two kinds of
cell are "no match" (-1) instead: a cell whose teacher match lands more than half a cell
outside image 1's crop (out of view: what forward motion and the crops make), and a cell
holding a keypoint the teacher left without a partner, with no matched keypoint within a
cell of it. ``refine`` marks the matches
whose keypoint lies within ``refine_radius`` pixels of its cell centre: a farther shift
would carry the local scale change into the sub-pixel target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import PhotometricAugmentation, make_sample, read_gray
from .labels import PairLabels, label_files, read_labels
from .losses import UNKNOWN


def crop_box(size: tuple[int, int], aspect: float, fraction: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random crop ``(x0, y0, width, height)`` of aspect ``aspect`` covering ``fraction`` of the largest that fits."""
    width, height = size
    crop_w = max(16, int(round(min(width, height * aspect) * fraction)))
    crop_h = max(16, min(height, int(round(crop_w / aspect))))
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    return x0, y0, crop_w, crop_h


def crop_and_resize(image: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The crop resized to ``size`` and the map (scale x, scale y, shift x, shift y) of pixel coordinates into it."""
    x0, y0, w, h = box
    crop = image[y0 : y0 + h, x0 : x0 + w]
    interpolation = cv2.INTER_AREA if w > size[0] else cv2.INTER_LINEAR
    resized = cv2.resize(crop, size, interpolation=interpolation)
    sx, sy = size[0] / w, size[1] / h
    # x' = (x - x0 + 0.5) * sx - 0.5: pixel centres at integer coordinates on both sides
    return resized, np.array([sx, sy, (0.5 - x0) * sx - 0.5, (0.5 - y0) * sy - 0.5])


def map_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    return points * transform[:2] + transform[2:]


def _on_grid(cells: np.ndarray, columns: int, rows: int) -> np.ndarray:
    return (cells[:, 0] >= 0) & (cells[:, 0] < columns) & (cells[:, 1] >= 0) & (cells[:, 1] < rows)


def sparse_targets(
    points0: np.ndarray,
    points1: np.ndarray,
    size: tuple[int, int],
    stride: int,
    refine_radius: float,
    unmatched0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cells1`` (``UNKNOWN`` where no teacher match), ``offsets1`` and ``refine`` from sparse matches in model-input pixels.

    ``unmatched0`` (model-input pixels, optional): the teacher's keypoints of image 0 without a
    partner; given (even empty), the negatives of the module docstring are marked -1."""
    columns, rows = size[0] // stride, size[1] // stride
    cells1 = np.full(columns * rows, UNKNOWN, np.int64)
    offsets1 = np.zeros((columns * rows, 2), np.float32)
    refine = np.zeros(columns * rows, bool)
    c0 = np.rint(points0 / stride).astype(np.int64)
    shift = points0 - c0 * stride  # the keypoint's offset from its cell centre
    landing = points1 - shift  # where the cell centre lands in image 1 (locally a translation)
    c1 = np.rint(landing / stride).astype(np.int64)
    on_grid0 = _on_grid(c0, columns, rows)
    inside = on_grid0 & _on_grid(c1, columns, rows)
    if unmatched0 is not None:
        # Out of view: the partner lies more than half a cell beyond image 1's model-input area.
        margin = stride / 2
        beyond = (landing[:, 0] < -margin - stride / 2) | (landing[:, 0] > size[0] + margin - stride / 2)
        beyond |= (landing[:, 1] < -margin - stride / 2) | (landing[:, 1] > size[1] + margin - stride / 2)
        out_of_view = on_grid0 & beyond
        cells1[c0[out_of_view, 1] * columns + c0[out_of_view, 0]] = -1
        # Keypoints without a partner, away from every matched keypoint.
        lone = np.rint(unmatched0 / stride).astype(np.int64).reshape(-1, 2)
        lone = lone[_on_grid(lone, columns, rows)]
        if len(lone):
            claimed = np.zeros((rows + 2, columns + 2), bool)  # matched keypoints' cells, dilated by one
            matched = c0[on_grid0]
            for dy in (0, 1, 2):
                for dx in (0, 1, 2):
                    claimed[matched[:, 1] + dy, matched[:, 0] + dx] = True
            lone = lone[~claimed[lone[:, 1] + 1, lone[:, 0] + 1]]
            cells1[lone[:, 1] * columns + lone[:, 0]] = -1
    if not inside.any():
        return cells1, offsets1, refine
    shift, landing, c0, c1 = shift[inside], landing[inside], c0[inside], c1[inside]
    distance = np.linalg.norm(shift, axis=1)
    index0 = c0[:, 1] * columns + c0[:, 0]
    index1 = c1[:, 1] * columns + c1[:, 0]
    order = np.argsort(distance, kind="stable")  # closest claims first
    _, first0 = np.unique(index0[order], return_index=True)
    by_cell1: dict[int, int] = {}  # cell of image 1 -> the closest claim
    for i in order[first0]:
        j = int(index1[i])
        if j not in by_cell1 or distance[i] < distance[by_cell1[j]]:
            by_cell1[j] = int(i)
    keep = np.array(sorted(by_cell1.values()), np.int64)
    cells1[index0[keep]] = index1[keep]
    offsets1[index0[keep]] = landing[keep] - c1[keep] * stride
    refine[index0[keep]] = distance[keep] <= refine_radius
    return cells1, offsets1, refine


class TeacherLabelPairs(Dataset):
    """Pairs of real images with the teacher's verified matches as targets.

    ``len(dataset)`` is ``pairs_per_epoch``; pair ``index`` of epoch ``epoch`` is drawn from
    ``seed``, ``epoch`` and ``index`` only. ``set_epoch`` also rescans the label folders, so a
    run started while the labeller still works trains on the labels written since.
    """

    def __init__(
        self,
        folders: Sequence[str | Path],
        size: tuple[int, int],
        stride: int,
        pairs_per_epoch: int,
        seed: int = 0,
        crop_scale: tuple[float, float] = (0.6, 1.0),
        min_matches: int = 50,
        refine_radius: float = 3.0,
        photometric: PhotometricAugmentation | None = PhotometricAugmentation(),
        exclude: Sequence[str] = (),
        negatives: bool = False,
    ) -> None:
        self.folders = [Path(f) for f in folders]
        self.size, self.stride, self.pairs_per_epoch, self.seed = size, stride, pairs_per_epoch, seed
        self.crop_scale, self.min_matches, self.refine_radius = crop_scale, min_matches, refine_radius
        self.photometric = photometric
        self.exclude = tuple(exclude)
        self.negatives = negatives
        self.epoch = 0
        self.files: list[Path] = []
        self._labels: dict[Path, PairLabels | None] = {}  # label file -> its kept labels, read once a run
        self.scan()

    def scan(self) -> None:
        """Index the kept pairs with at least ``min_matches`` matches (each file read once)."""
        for path in label_files(self.folders):
            if path not in self._labels and not any(part in str(path) for part in self.exclude):
                labels = read_labels(path)
                self._labels[path] = labels if labels is not None and len(labels.keypoints0) >= self.min_matches else None
        self.files = sorted(path for path, labels in self._labels.items() if labels is not None)
        if not self.files:
            raise ValueError(f"no kept teacher labels under {', '.join(map(str, self.folders))}; run `coarse-loftr label` first")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.scan()

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        labels = self._labels[self.files[int(rng.integers(len(self.files)))]]
        images = [read_gray(labels.image0), read_gray(labels.image1)]
        points = [labels.keypoints0.astype(np.float64), labels.keypoints1.astype(np.float64)]
        lone = [labels.unmatched0.astype(np.float64), labels.unmatched1.astype(np.float64)]
        if rng.random() < 0.5:  # backward motion as often as forward
            images, points, lone = images[::-1], points[::-1], lone[::-1]
        aspect = self.size[0] / self.size[1]
        outputs = []
        for image, pts, unmatched in zip(images, points, lone):
            box = crop_box((image.shape[1], image.shape[0]), aspect, rng.uniform(*self.crop_scale), rng)
            resized, transform = crop_and_resize(image, box, self.size)
            if self.photometric is not None:
                resized = self.photometric(resized, rng)
            outputs.append((resized, map_points(pts, transform), map_points(unmatched, transform)))
        (image0, points0, unmatched0), (image1, points1, _) = outputs
        cells1, offsets1, refine = sparse_targets(
            points0, points1, self.size, self.stride, self.refine_radius, unmatched0 if self.negatives else None
        )
        sample = make_sample(image0, image1, cells1, offsets1)
        sample["refine"] = torch.from_numpy(refine)
        return sample


class MixedPairs(Dataset):
    """Each pair drawn from one of several datasets with set probabilities (seeded per epoch and index)."""

    def __init__(self, datasets: Sequence[Dataset], probabilities: Sequence[float], pairs_per_epoch: int, seed: int = 0) -> None:
        if len(datasets) != len(probabilities) or not datasets:
            raise ValueError("MixedPairs needs one probability per dataset")
        total = float(sum(probabilities))
        if total <= 0 or any(p < 0 for p in probabilities):
            raise ValueError(f"mixing probabilities {list(probabilities)} must be non-negative with a positive sum")
        self.datasets = list(datasets)
        self.cumulative = np.cumsum(np.asarray(probabilities, np.float64) / total)
        self.pairs_per_epoch, self.seed, self.epoch = pairs_per_epoch, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index, 7])
        choice = int(np.searchsorted(self.cumulative, rng.random(), side="right"))
        dataset = self.datasets[min(choice, len(self.datasets) - 1)]
        sample = dataset[index % len(dataset)]
        if "refine" not in sample:
            sample["refine"] = sample["cells1"] >= 0
        return sample
