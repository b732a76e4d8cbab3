"""Relative-pose accuracy along a video with ground-truth poses, at keyframe distances (strides).

For SLAM / visual-odometry developers: ``coarse-loftr eval --sequence DIR``.

Folder (``read_sequence``)::

    DIR/*.png (or DIR/images/*.png)   the frames, any image suffix cv2 reads
    poses.txt                         TUM trajectory: ``timestamp tx ty tz qx qy qz qw`` per line,
                                      camera-to-world (T_w_c: x_w = R x_c + t), metres;
                                      ``#`` comments and blank lines are skipped
    cameras.json                      pinhole intrinsics ``fx fy cx cy`` in pixels (optional
                                      ``width``, ``height``: checked against the frames)

``poses.txt`` and ``cameras.json`` are looked up beside the frames, then in the folder above
(``kitti_seq_dev/images`` finds ``kitti_seq_dev/poses.txt``). Frames and poses are paired by
order: the frames sorted by file name, line i of the trajectory for frame i, and the counts
must agree (the timestamps are carried into the output trajectory, never parsed from the names).

Protocol: for each stride s, every pair (k, k+s) is matched and scored with
``evaluation.relative_pose_error`` (essential matrix by RANSAC on normalised coordinates,
max of the rotation and translation-direction errors, degrees) against
``T_0to1 = inv(T_w_c[k+s]) @ T_w_c[k]`` (camera k to camera k+s), then AUC@5/10/20 deg as in
``evaluation.evaluate_poses``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from . import evaluation

# A matcher of the sequence: (index of frame 0, index of frame 1) -> (keypoints0, keypoints1), pixels.
PairMatcher = Callable[[int, int], tuple[np.ndarray, np.ndarray]]

DEFAULT_STRIDES = (1, 5, 10, 20)
CAMERA_KEYS = ("fx", "fy", "cx", "cy")


@dataclass
class SequenceData:
    """Frames of one camera with their poses.

    Attributes:
        images: the frame files, sorted by name.
        timestamps: (N,) seconds, from the trajectory.
        poses: (N, 4, 4) camera-to-world T_w_c (x_w = R x_c + t), metres.
        K: (3, 3) pinhole intrinsics in pixels.
    """

    images: list[Path]
    timestamps: np.ndarray
    poses: np.ndarray
    K: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def relative_pose(self, k0: int, k1: int) -> np.ndarray:
        """``T_0to1 = inv(T_w_c[k1]) @ T_w_c[k0]``: maps camera-k0 coordinates to camera-k1 coordinates."""
        return np.linalg.inv(self.poses[k1]) @ self.poses[k0]

    def limited(self, count: int | None) -> "SequenceData":
        """The first ``count`` frames (all when None)."""
        if count is None:
            return self
        return SequenceData(self.images[:count], self.timestamps[:count], self.poses[:count], self.K)


def pose_matrix(translation: Sequence[float], quaternion_xyzw: Sequence[float]) -> np.ndarray:
    """4x4 pose from a translation and a unit quaternion (x, y, z, w; normalised here)."""
    x, y, z, w = np.asarray(quaternion_xyzw, np.float64) / np.linalg.norm(quaternion_xyzw)
    T = np.eye(4)
    T[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    T[:3, 3] = translation
    return T


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w), w >= 0, of a 3x3 rotation matrix."""
    R = np.asarray(rotation, np.float64)
    # Shepperd's method: take the largest of the four diagonal combinations for stability.
    trace = np.trace(R)
    candidates = [trace, R[0, 0], R[1, 1], R[2, 2]]
    i = int(np.argmax(candidates))
    if i == 0:
        s = 2 * math.sqrt(1 + trace)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, s / 4]
    elif i == 1:
        s = 2 * math.sqrt(max(1 + R[0, 0] - R[1, 1] - R[2, 2], 1e-12))
        q = [s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif i == 2:
        s = 2 * math.sqrt(max(1 + R[1, 1] - R[0, 0] - R[2, 2], 1e-12))
        q = [(R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2 * math.sqrt(max(1 + R[2, 2] - R[0, 0] - R[1, 1], 1e-12))
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q) / np.linalg.norm(q)
    return -q if q[3] < 0 else q


def read_tum_trajectory(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps (N,) s, poses (N, 4, 4)) of a TUM file; ValueError naming the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory {path} does not exist; give --trajectory poses.txt (TUM: timestamp tx ty tz qx qy qz qw)")
    stamps, poses = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.replace(",", " ").split()
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 8 or not all(math.isfinite(v) for v in values) or np.linalg.norm(values[4:]) < 1e-6:
            raise ValueError(
                f"{path} line {number} is not a TUM pose (8 numbers: timestamp tx ty tz qx qy qz qw, a non-zero quaternion): {text[:60]!r}"
            )
        stamps.append(values[0])
        poses.append(pose_matrix(values[1:4], values[4:8]))
    if not poses:
        raise ValueError(f"{path} holds no poses; expected TUM lines: timestamp tx ty tz qx qy qz qw")
    return np.asarray(stamps), np.stack(poses)


def write_tum_trajectory(path: str | Path, timestamps: Sequence[float], poses: np.ndarray) -> bytes:
    """The TUM text of camera-to-world ``poses`` (N, 4, 4) (``evo_ape tum`` reads it); writes it when ``path``."""
    lines = ["# timestamp tx ty tz qx qy qz qw (camera-to-world)"]
    for stamp, T in zip(timestamps, poses):
        q = matrix_to_quaternion(T[:3, :3])
        lines.append(f"{stamp:.6f} " + " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q)))
    text = ("\n".join(lines) + "\n").encode("utf-8")
    if path is not None:
        Path(path).write_bytes(text)
    return text


def read_pinhole_camera(path: str | Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    """(K 3x3 in pixels, (width, height) or None) of a ``cameras.json`` with ``fx fy cx cy``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"camera file {path} does not exist; give --camera cameras.json with fx, fy, cx, cy") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"camera file {path} is not JSON ({error}); write {{\"fx\": ..., \"fy\": ..., \"cx\": ..., \"cy\": ...}}") from None
    if not isinstance(data, dict):
        raise ValueError(f"camera file {path} must hold a JSON object with fx, fy, cx, cy (pixels)")
    missing = [key for key in CAMERA_KEYS if key not in data]
    if missing:
        raise ValueError(f"camera file {path} lacks {', '.join(missing)}; it needs fx, fy, cx, cy in pixels")
    values = {}
    for key in CAMERA_KEYS + ("width", "height"):
        if key not in data or (key in ("width", "height") and data[key] is None):
            continue
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"camera file {path}: {key} must be a finite number of pixels, got {value!r}")
        values[key] = float(value)
    if values["fx"] <= 0 or values["fy"] <= 0:
        raise ValueError(f"camera file {path}: fx and fy must be positive focal lengths in pixels")
    K = np.array([[values["fx"], 0, values["cx"]], [0, values["fy"], values["cy"]], [0, 0, 1]])
    size = (int(values["width"]), int(values["height"])) if "width" in values and "height" in values else None
    return K, size


def _beside(frames: Path, name: str) -> Path:
    """``frames/name``, else ``frames/../name`` when only that exists."""
    for folder in (frames, frames.parent):
        if (folder / name).is_file():
            return folder / name
    return frames / name


def read_sequence(folder: str | Path, trajectory: str | Path | None = None, camera: str | Path | None = None) -> SequenceData:
    """The frames of ``folder`` (or ``folder/images``) with their poses and intrinsics (module docstring).

    Raises FileNotFoundError or ValueError with a one-line message for a missing folder, no
    frames, a missing or unreadable trajectory or camera file, or frame and pose counts that
    differ.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"sequence folder {folder} does not exist; give the folder of the frames")
    frames_dir = folder
    images = list(evaluation.iterate_images(folder))
    if not images and (folder / "images").is_dir():
        frames_dir = folder / "images"
        images = list(evaluation.iterate_images(frames_dir))
    if not images:
        raise FileNotFoundError(f"no images in {folder} (nor in {folder / 'images'}); expected the frames as .png/.jpg files")
    trajectory = Path(trajectory) if trajectory is not None else _beside(frames_dir, "poses.txt")
    camera = Path(camera) if camera is not None else _beside(frames_dir, "cameras.json")
    timestamps, poses = read_tum_trajectory(trajectory)
    if len(poses) != len(images):
        raise ValueError(
            f"{trajectory} has {len(poses)} poses for {len(images)} frames in {frames_dir}; frames take poses in order (sorted "
            "file names, one TUM line per frame), so give exactly one pose per frame"
        )
    K, size = read_pinhole_camera(camera)
    if size is not None:
        first = cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED)
        if first is None:
            raise ValueError(f"cannot read image {images[0]}")
        if (first.shape[1], first.shape[0]) != size:
            raise ValueError(
                f"{camera} is for {size[0]}x{size[1]} images but {images[0].name} is {first.shape[1]}x{first.shape[0]}; "
                "give the intrinsics of these frames"
            )
    return SequenceData(images, timestamps, poses, K)


def stride_pairs(length: int, stride: int) -> list[tuple[int, int]]:
    """Every pair (k, k + stride) of a sequence of ``length`` frames."""
    return [(k, k + stride) for k in range(length - stride)]


def parse_strides(text: str) -> tuple[int, ...]:
    """``"1,5,10,20"`` -> (1, 5, 10, 20); ValueError for anything but positive whole numbers."""
    try:
        strides = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        strides = ()
    if not strides or min(strides) < 1:
        raise ValueError(f"--strides must be positive whole numbers separated by commas (e.g. 1,5,10,20), got {text!r}")
    return tuple(sorted(set(strides)))


class FrameCache:
    """Reads each frame once (unchanged, as cv2 reads it) and keeps it.

    With ``window`` (frames), asking for frame i forgets the frames more than ``window`` away
    from it, so a long video visited in time order (``evaluate_strides``' order, window = the
    largest stride) holds at most 2 * window + 1 frames.
    """

    def __init__(self, images: Sequence[Path], window: int | None = None) -> None:
        self.images = list(images)
        self.window = window
        self._frames: dict[int, np.ndarray] = {}

    def __getitem__(self, index: int) -> np.ndarray:
        if index not in self._frames:
            self._frames[index] = evaluation._read(self.images[index])
            _forget_before(self._frames, index, self.window)
        return self._frames[index]


def _forget_before(cache: dict[int, object], index: int, window: int | None) -> None:
    if window is not None:
        for old in [i for i in cache if abs(i - index) > window]:
            del cache[old]


def pair_matcher(method: evaluation.Method, frames: FrameCache) -> PairMatcher:
    """Match frame pairs by index with a two-image method (``Matcher().match``, ORB, SIFT)."""
    return lambda k0, k1: method(frames[k0], frames[k1])


def keyframe_matcher(matcher, frames: FrameCache) -> PairMatcher:
    """Match frame pairs by index as a SLAM front end does against keyframes: ``Matcher.extract``
    once per frame (kept while ``frames.window`` says it may be needed), ``Matcher.match_extracted
    (keyframe, frame)`` per pair."""
    features: dict[int, object] = {}

    def get(index: int):
        if index not in features:
            features[index] = matcher.extract(frames[index])
            _forget_before(features, index, frames.window)
        return features[index]

    def match(k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        result = matcher.match_extracted(get(k0), get(k1))
        return result.keypoints0.astype(np.float64), result.keypoints1.astype(np.float64)

    return match


@dataclass
class StrideResult:
    """Per-pair outcome at one stride: the pairs, their pose errors (deg, inf = failure), match counts."""

    stride: int
    pairs: list[tuple[int, int]]
    errors: list[float]
    matches: list[int]
    estimates: list[np.ndarray | None]

    def metrics(self) -> dict[str, float]:
        """AUC@5/10/20 deg (percent), mean matches, number of pairs."""
        aucs = evaluation.auc(self.errors, evaluation.POSE_THRESHOLDS)
        out = {f"auc@{t}deg": 100 * a for t, a in zip(evaluation.POSE_THRESHOLDS, aucs)}
        out["matches"] = float(np.mean(self.matches)) if self.matches else 0.0
        out["pairs"] = float(len(self.pairs))
        return out


def evaluate_strides(
    match: PairMatcher,
    data: SequenceData,
    strides: Sequence[int] = DEFAULT_STRIDES,
    progress: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> dict[int, StrideResult]:
    """Match and score every (k, k+s) pair of ``data`` (the first ``limit`` per stride) for each
    stride; ``progress(1)`` after each pair.

    Pairs are visited in time order of their newer frame, as a front end meets them: for each
    frame j, the pairs (j - s, j) of every stride s (so a ``FrameCache`` window of the largest
    stride suffices).
    """
    out = {stride: StrideResult(stride, [], [], [], []) for stride in strides}
    wanted = {stride: stride_pairs(len(data), stride)[:limit] for stride in strides}
    for k1 in range(len(data)):
        for stride in strides:
            k0 = k1 - stride
            result = out[stride]
            if k0 < 0 or len(result.pairs) >= len(wanted[stride]):
                continue
            keypoints0, keypoints1 = match(k0, k1)
            result.pairs.append((k0, k1))
            result.errors.append(evaluation.relative_pose_error(keypoints0, keypoints1, data.K, data.K, data.relative_pose(k0, k1)))
            result.estimates.append(evaluation.estimate_relative_pose(keypoints0, keypoints1, data.K, data.K))
            result.matches.append(len(keypoints0))
            if progress:
                progress(1)
    return out


def chain_trajectory(data: SequenceData, steps: Sequence[np.ndarray | None]) -> tuple[np.ndarray, int]:
    """Monocular odometry from stride-1 estimates: (poses (N, 4, 4) camera-to-world, failed steps).

    ``steps[k]`` is the estimated ``T_0to1`` of pair (k, k+1) with a unit translation (or None
    when no pose was found). Each step's translation is scaled by the ground-truth step length
    ``|t|`` of that pair (monocular scale is unobservable), and ``T_w_c[k+1] = T_w_c[k] @
    inv(T_0to1)``, starting from the ground-truth first pose. A failed step repeats the
    previous step's motion (constant velocity; identity before any success).
    """
    if len(steps) != len(data) - 1:
        raise ValueError(f"need {len(data) - 1} stride-1 steps for {len(data)} frames, got {len(steps)}")
    poses = [data.poses[0]]
    last, failed = np.eye(4), 0
    for k, step in enumerate(steps):
        if step is None:
            failed += 1
            step = last
        else:
            step = step.copy()
            length = np.linalg.norm(data.relative_pose(k, k + 1)[:3, 3])
            step[:3, 3] = step[:3, 3] / max(np.linalg.norm(step[:3, 3]), 1e-12) * length
        last = step
        poses.append(poses[-1] @ np.linalg.inv(step))
    return np.stack(poses), failed


def format_stride_table(results: dict[str, dict[int, StrideResult]]) -> str:
    """Plain text: one row per method and stride with AUC@5/10/20 deg and mean matches."""
    width = max([len(n) for n in results] + [6]) + 2
    lines = ["method".ljust(width) + "stride".rjust(8) + "".join(h.rjust(12) for h in ("AUC@5", "AUC@10", "AUC@20", "matches", "pairs"))]
    for name, strides in results.items():
        for stride, result in strides.items():
            m = result.metrics()
            cells = [m["auc@5deg"], m["auc@10deg"], m["auc@20deg"], m["matches"]]
            lines.append(name.ljust(width) + f"{stride:8d}" + "".join(f"{v:12.1f}" for v in cells) + f"{int(m['pairs']):12d}")
    return "\n".join(lines)
