"""Training pairs with exact coarse-cell ground truth.

Every dataset returns the same sample layout (a dict of tensors), so the losses and the
trainer never know where a pair came from:

``image0``, ``image1``
    float32 ``[1, H, W]`` grayscale in [0, 1] (H, W = the model input size).
``cells1``
    int64 ``[L0]``: for each coarse cell of image 0 (row-major), the index of the coarse
    cell of image 1 it matches, or -1 when it has no match (leaves the image, is occluded,
    has no depth, or is not a mutual nearest cell).
``offsets1``
    float32 ``[L0, 2]``: the exact position of the match in image 1 minus the position of
    cell ``cells1`` in model-input pixels (x, y); the sub-pixel target of a refinement
    stage. Zero where ``cells1`` is -1.

Coordinate convention (the one of ``coarse_loftr_train.export``): coarse cell
(row, col) stands for the model-input pixel (x, y) = (col * stride, row * stride); x to
the right, y down, pixel centres at integer coordinates.

Ground truth comes from one function, ``coarse_targets``: give it where each cell of
image 0 lands in image 1 and where each cell of image 1 lands in image 0 (from a
homography, or from depth, intrinsics and poses) and it returns ``cells1`` and
``offsets1``, keeping only mutually consistent cells as LoFTR does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- geometry


def cell_points(columns: int, rows: int, stride: int) -> np.ndarray:
    """Model-input pixel (x, y) of every coarse cell, row-major, float64 ``[rows * columns, 2]``."""
    ys, xs = np.mgrid[0:rows, 0:columns]
    return np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float64) * stride


def apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map pixel points ``[N, 2]`` through a 3x3 homography; points at infinity become NaN."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.asarray(homography, np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        mapped = homogeneous[:, :2] / homogeneous[:, 2:3]
    mapped[homogeneous[:, 2] <= 1e-12] = np.nan
    return mapped


def coarse_targets(
    points1: np.ndarray,
    valid01: np.ndarray,
    points0: np.ndarray,
    valid10: np.ndarray,
    grid: tuple[int, int],
    stride: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Coarse matches and sub-pixel targets from the two dense cell warps.

    Args:
        points1: ``[L0, 2]`` where each cell of image 0 lands in image 1 (pixels).
        valid01: ``[L0]`` bool, False where that landing point is unknown or unreliable.
        points0: ``[L1, 2]`` where each cell of image 1 lands in image 0.
        valid10: ``[L1]`` bool.
        grid: (columns, rows) of both coarse grids (the images have the same size).
        stride: pixels per coarse cell.

    Returns:
        ``cells1`` int64 ``[L0]`` (-1 for none) and ``offsets1`` float32 ``[L0, 2]``.
        Cell i matches cell j when i lands nearest to j and j lands back nearest to i.
    """
    columns, rows = grid

    def nearest_cell(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            col = np.round(points[:, 0] / stride)
            row = np.round(points[:, 1] / stride)
            inside = valid & np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < columns) & (row >= 0) & (row < rows)
        cells = np.full(len(points), -1, dtype=np.int64)
        cells[inside] = (row[inside] * columns + col[inside]).astype(np.int64)
        return cells

    forward = nearest_cell(points1, valid01)
    backward = nearest_cell(points0, valid10)
    mutual = forward >= 0
    mutual[mutual] = backward[forward[mutual]] == np.flatnonzero(mutual)
    cells1 = np.where(mutual, forward, -1)
    offsets1 = np.zeros((len(points1), 2), dtype=np.float32)
    if mutual.any():
        matched = cells1[mutual]
        anchor = np.stack([matched % columns, matched // columns], axis=1) * stride
        offsets1[mutual] = (points1[mutual] - anchor).astype(np.float32)
    return cells1, offsets1


def homography_targets(homography: np.ndarray, size: tuple[int, int], stride: int) -> tuple[np.ndarray, np.ndarray]:
    """``coarse_targets`` for a pair related by ``homography`` (image 0 -> image 1 pixels).

    ``size`` is (width, height) of both images; a point is valid when it lands inside
    the other image.
    """
    width, height = size
    grid = (width // stride, height // stride)
    points = cell_points(*grid, stride)

    def inside(p: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.isfinite(p).all(axis=1) & (p[:, 0] >= 0) & (p[:, 0] <= width - 1) & (p[:, 1] >= 0) & (p[:, 1] <= height - 1)

    points1 = apply_homography(homography, points)
    points0 = apply_homography(np.linalg.inv(homography), points)
    return coarse_targets(points1, inside(points1), points0, inside(points0), grid, stride)


@dataclass
class DepthView:
    """One view of a scene with depth: what ``depth_targets`` needs.

    Attributes:
        depth: float32 ``[H, W]`` z-depth along the optical axis, 0 (or non-finite) where unknown,
            at the pixel grid of the image.
        intrinsics: 3x3 camera matrix in the same pixels (OpenCV convention).
        world_to_camera: 4x4 rigid transform from world to camera coordinates.
    """

    depth: np.ndarray
    intrinsics: np.ndarray
    world_to_camera: np.ndarray


def project_through_depth(
    points: np.ndarray, source: DepthView, target: DepthView, depth_tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Map pixels of ``source`` into ``target`` using source depth; check target depth.

    A point is valid when its source depth is known, it lands in front of the target
    camera and inside its image, and the target's depth at the landing pixel agrees with
    the projected depth within ``depth_tolerance`` (relative: ``|z - d| <= tol * z``),
    which rejects occluded points.
    """
    height, width = source.depth.shape
    cols = np.clip(np.round(points[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.round(points[:, 1]).astype(int), 0, height - 1)
    depth = source.depth[rows, cols].astype(np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    depth = np.where(valid, depth, 1.0)
    rays = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.linalg.inv(source.intrinsics).T
    camera_points = rays * depth[:, None]
    relative = target.world_to_camera @ np.linalg.inv(source.world_to_camera)
    moved = camera_points @ relative[:3, :3].T + relative[:3, 3]
    z = moved[:, 2]
    valid &= z > 1e-9
    z_safe = np.where(valid, z, 1.0)
    projected = moved @ np.asarray(target.intrinsics, np.float64).T
    landing = projected[:, :2] / z_safe[:, None]
    target_height, target_width = target.depth.shape
    with np.errstate(invalid="ignore"):
        valid &= (landing[:, 0] >= 0) & (landing[:, 0] <= target_width - 1) & (landing[:, 1] >= 0) & (landing[:, 1] <= target_height - 1)
    tcols = np.clip(np.round(landing[:, 0]).astype(int), 0, target_width - 1)
    trows = np.clip(np.round(landing[:, 1]).astype(int), 0, target_height - 1)
    target_depth = target.depth[trows, tcols].astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid &= np.isfinite(target_depth) & (np.abs(target_depth - z_safe) <= depth_tolerance * z_safe)
    landing[~valid] = np.nan
    return landing, valid


def depth_targets(view0: DepthView, view1: DepthView, stride: int, depth_tolerance: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """``coarse_targets`` for two views with depth, intrinsics and poses.

    Both views must already be at the model input size (scale the intrinsics with the
    image: ``resize_view``). Works for any dataset that provides these three things.
    """
    height, width = view0.depth.shape
    if view1.depth.shape != (height, width):
        raise ValueError(f"both views must have the same size, got {view0.depth.shape} and {view1.depth.shape}")
    grid = (width // stride, height // stride)
    points = cell_points(*grid, stride)
    points1, valid01 = project_through_depth(points, view0, view1, depth_tolerance)
    points0, valid10 = project_through_depth(points, view1, view0, depth_tolerance)
    return coarse_targets(points1, valid01, points0, valid10, grid, stride)


def resize_view(image: np.ndarray, view: DepthView, size: tuple[int, int]) -> tuple[np.ndarray, DepthView]:
    """Resize an image and its depth view to ``size`` (width, height), scaling the intrinsics.

    The scaling keeps pixel centres consistent: x' = (x + 0.5) * sx - 0.5.
    """
    width, height = size
    sx = width / image.shape[1]
    sy = height / image.shape[0]
    scale = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    interpolation = cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    depth = cv2.resize(view.depth.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    return resized, DepthView(depth, scale @ view.intrinsics, view.world_to_camera)


# --------------------------------------------------------------------------- images


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split_images(files: Sequence[Path], holdout: int) -> tuple[list[Path], list[Path]]:
    """(training, held-out): the last ``holdout`` files (by name) are held out."""
    files = list(files)
    if holdout >= len(files):
        folder = Path(files[0]).parent if files else "the image folder"
        raise ValueError(
            f"data.holdout={holdout} holds out all {len(files)} images of {folder}; "
            f"set data.holdout below {len(files)} (e.g. data.holdout={max(0, len(files) // 10)})"
        )
    return (files, []) if holdout <= 0 else (files[:-holdout], files[-holdout:])


def read_gray(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 grayscale ``[H, W]``."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image


@dataclass(frozen=True)
class PhotometricAugmentation:
    """Random photometric changes, each applied with probability ``probability``.

    Units: brightness as an additive offset in gray levels, contrast as a gain, gamma as an
    exponent, noise as a standard deviation in gray levels, blur as a Gaussian sigma in
    pixels, JPEG as a quality range.
    """

    probability: float = 0.5
    brightness: float = 30.0
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.4)
    noise: float = 6.0
    blur: tuple[float, float] = (0.3, 1.5)
    jpeg_quality: tuple[int, int] = (30, 90)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = image.astype(np.float32)
        if rng.random() < self.probability:
            x = x + rng.uniform(-self.brightness, self.brightness)
        if rng.random() < self.probability:
            mean = x.mean()
            x = (x - mean) * rng.uniform(*self.contrast) + mean
        if rng.random() < self.probability:
            x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** rng.uniform(*self.gamma)
        if rng.random() < self.probability:
            sigma = rng.uniform(*self.blur)
            x = cv2.GaussianBlur(x, (0, 0), sigma)
        if rng.random() < self.probability:
            x = x + rng.normal(0.0, rng.uniform(0, self.noise), x.shape).astype(np.float32)
        out = np.clip(x, 0, 255).astype(np.uint8)
        if rng.random() < self.probability:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, buffer = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                out = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
        return out


@dataclass(frozen=True)
class HomographySampling:
    """Random geometric change between the two views of a homography pair.

    Image 0 is a random crop of the source photo (``crop_scale``: crop side relative to the
    largest crop of the output aspect ratio that fits). Image 1 sees the same region moved:
    rotated by ``min_rotation`` to ``rotation`` degrees either way, scaled by a factor in ``scale`` (log-uniform),
    translated by up to ``translation`` of the crop size and with each corner moved by up to
    ``perspective`` of the crop size.
    """

    crop_scale: tuple[float, float] = (0.6, 1.0)
    rotation: float = 25.0
    scale: tuple[float, float] = (0.7, 1.4)
    translation: float = 0.15
    perspective: float = 0.12
    min_rotation: float = 0.0


def _crop_corners(source_size: tuple[int, int], aspect: float, fraction: float, rng: np.random.Generator) -> np.ndarray:
    width, height = source_size
    crop_w = min(width, height * aspect) * fraction
    crop_h = crop_w / aspect
    x0 = rng.uniform(0, width - crop_w)
    y0 = rng.uniform(0, height - crop_h)
    return np.array([[x0, y0], [x0 + crop_w, y0], [x0 + crop_w, y0 + crop_h], [x0, y0 + crop_h]])


def _corner_targets(size: tuple[int, int]) -> np.ndarray:
    width, height = size
    return np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])


def sample_homography_pair(
    source: np.ndarray, size: tuple[int, int], sampling: HomographySampling, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two warped views of ``source`` at ``size`` (width, height) and the homography 0 -> 1.

    Returns ``(image0, image1, homography)``; pixels of image 1 that fall outside the
    source are black.
    """
    height, width = source.shape[:2]
    aspect = size[0] / size[1]
    corners0 = _crop_corners((width, height), aspect, rng.uniform(*sampling.crop_scale), rng)
    centre = corners0.mean(axis=0)
    extent = corners0[2] - corners0[0]
    if sampling.min_rotation > 0:
        angle = np.deg2rad(rng.choice([-1.0, 1.0]) * rng.uniform(sampling.min_rotation, sampling.rotation))
    else:  # (the draw of the shipped recipes, kept so that their seeds give the same pairs)
        angle = np.deg2rad(rng.uniform(-sampling.rotation, sampling.rotation))
    scale = np.exp(rng.uniform(np.log(sampling.scale[0]), np.log(sampling.scale[1])))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners1 = (corners0 - centre) @ rotation.T / scale + centre
    corners1 = corners1 + rng.uniform(-sampling.translation, sampling.translation, 2) * extent
    corners1 = corners1 + rng.uniform(-sampling.perspective, sampling.perspective, (4, 2)) * extent
    targets = _corner_targets(size)
    source_to_0 = cv2.getPerspectiveTransform(corners0.astype(np.float32), targets.astype(np.float32)).astype(np.float64)
    source_to_1 = cv2.getPerspectiveTransform(corners1.astype(np.float32), targets.astype(np.float32)).astype(np.float64)
    interpolation = cv2.INTER_AREA if extent[0] > 1.5 * size[0] else cv2.INTER_LINEAR
    image0 = cv2.warpPerspective(source, source_to_0, size, flags=interpolation, borderMode=cv2.BORDER_REFLECT101)
    image1 = cv2.warpPerspective(source, source_to_1, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    homography = source_to_1 @ np.linalg.inv(source_to_0)
    return image0, image1, homography / homography[2, 2]


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / 255.0)[None]


def make_sample(image0: np.ndarray, image1: np.ndarray, cells1: np.ndarray, offsets1: np.ndarray) -> dict[str, torch.Tensor]:
    """The common sample dict (see the module docstring)."""
    return {
        "image0": _to_tensor(image0),
        "image1": _to_tensor(image1),
        "cells1": torch.from_numpy(cells1.astype(np.int64)),
        "offsets1": torch.from_numpy(offsets1.astype(np.float32)),
    }


class HomographyPairs(Dataset):
    """Synthetic homography pairs from a folder of photographs.

    ``len(dataset)`` is the number of pairs per epoch; pair ``index`` of epoch ``epoch``
    draws its source image and warps from ``seed``, ``epoch`` and ``index`` only, so a run
    is reproducible under any number of loader workers or processes. Call
    ``set_epoch`` before each epoch.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        size: tuple[int, int],
        stride: int,
        pairs_per_epoch: int,
        seed: int = 0,
        sampling: HomographySampling = HomographySampling(),
        photometric: PhotometricAugmentation | None = PhotometricAugmentation(),
    ) -> None:
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("HomographyPairs needs at least one image")
        self.size = size
        self.stride = stride
        self.pairs_per_epoch = pairs_per_epoch
        self.seed = seed
        self.sampling = sampling
        self.photometric = photometric
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        source = read_gray(self.files[int(rng.integers(len(self.files)))])
        image0, image1, homography = sample_homography_pair(source, self.size, self.sampling, rng)
        if self.photometric is not None:
            image0 = self.photometric(image0, rng)
            image1 = self.photometric(image1, rng)
        if rng.random() < 0.5:  # either view may be the warped one
            image0, image1, homography = image1, image0, np.linalg.inv(homography)
        cells1, offsets1 = homography_targets(homography, self.size, self.stride)
        sample = make_sample(image0, image1, cells1, offsets1)
        sample["homography"] = torch.from_numpy(homography.astype(np.float64))
        return sample


# --------------------------------------------------------------------------- BlendedMVS


def read_pfm(path: str | Path) -> np.ndarray:
    """Read a PFM file (as BlendedMVS stores depth) into float32 ``[H, W]`` or ``[H, W, 3]``, top row first."""
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise ValueError(f"{path} is not a PFM file (header {header!r})")
        width, height = (int(v) for v in f.readline().split())
        scale = float(f.readline().strip())
        dtype = "<f4" if scale < 0 else ">f4"
        channels = 3 if header == b"PF" else 1
        data = np.frombuffer(f.read(width * height * channels * 4), dtype=dtype)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.flipud(data.reshape(shape)).astype(np.float32)


def write_pfm(path: str | Path, image: np.ndarray) -> None:
    """Write float32 ``[H, W]`` as a little-endian grayscale PFM file."""
    image = np.asarray(image, dtype="<f4")
    with open(path, "wb") as f:
        f.write(b"Pf\n%d %d\n-1.0\n" % (image.shape[1], image.shape[0]))
        f.write(np.flipud(image).tobytes())


def read_mvsnet_camera(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an MVSNet/BlendedMVS ``*_cam.txt``: (world_to_camera 4x4, intrinsics 3x3)."""
    words = Path(path).read_text().split()
    try:
        extrinsic_at = words.index("extrinsic") + 1
        intrinsic_at = words.index("intrinsic") + 1
        extrinsic = np.array(words[extrinsic_at : extrinsic_at + 16], dtype=np.float64).reshape(4, 4)
        intrinsic = np.array(words[intrinsic_at : intrinsic_at + 9], dtype=np.float64).reshape(3, 3)
    except (ValueError, IndexError):
        raise ValueError(f"{path} is not an MVSNet camera file (needs 'extrinsic' 4x4 and 'intrinsic' 3x3)") from None
    return extrinsic, intrinsic


def read_mvsnet_pairs(path: str | Path) -> list[tuple[int, int, float]]:
    """Read an MVSNet ``pair.txt``: (reference view, source view, score) triples."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    pairs = []
    for at in range(1, 1 + 2 * int(lines[0][0]), 2):
        reference = int(lines[at][0])
        entry = lines[at + 1]
        for k in range(int(entry[0])):
            pairs.append((reference, int(entry[1 + 2 * k]), float(entry[2 + 2 * k])))
    return pairs


class BlendedMVSPairs(Dataset):
    """Pairs of the BlendedMVS low-res release (768x576), with depth-based ground truth.

    Layout (per scene folder under ``root``)::

        <scene>/blended_images/00000000.jpg     (``*_masked.jpg`` files are ignored)
        <scene>/rendered_depth_maps/00000000.pfm
        <scene>/cams/00000000_cam.txt           (MVSNet format: extrinsic = world to camera)
        <scene>/cams/pair.txt                   (MVSNet view selection)

    Each scene's ``pair.txt`` gives the candidate pairs; the ``top_sources`` best-scored
    sources of each reference view are used. Images are resized to ``size`` with the
    intrinsics scaled to match; ``depth_tolerance`` is relative (0.05 = 5 %).
    """

    def __init__(
        self,
        root: str | Path,
        size: tuple[int, int],
        stride: int,
        scenes: Sequence[str] | None = None,
        top_sources: int = 5,
        depth_tolerance: float = 0.05,
        min_matches: int = 1,
        photometric: PhotometricAugmentation | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"BlendedMVS root {self.root} does not exist")
        self.size = size
        self.stride = stride
        self.depth_tolerance = depth_tolerance
        self.min_matches = min_matches
        self.photometric = photometric
        self.seed = seed
        self.epoch = 0
        scene_dirs = sorted(p for p in self.root.iterdir() if (p / "cams" / "pair.txt").is_file())
        if scenes is not None:
            wanted = set(scenes)
            scene_dirs = [p for p in scene_dirs if p.name in wanted]
        if not scene_dirs:
            raise FileNotFoundError(f"no BlendedMVS scene (with cams/pair.txt) under {self.root}")
        self.pairs: list[tuple[Path, int, int]] = []
        for scene in scene_dirs:
            per_reference: dict[int, list[tuple[float, int]]] = {}
            for reference, source, score in read_mvsnet_pairs(scene / "cams" / "pair.txt"):
                per_reference.setdefault(reference, []).append((score, source))
            for reference, sources in sorted(per_reference.items()):
                for _, source in sorted(sources, reverse=True)[:top_sources]:
                    self.pairs.append((scene, reference, source))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def load_view(self, scene: Path, view: int) -> tuple[np.ndarray, DepthView]:
        """The image (uint8 gray) and depth view of one view, resized to the model input."""
        name = f"{view:08d}"
        image = read_gray(scene / "blended_images" / f"{name}.jpg")
        world_to_camera, intrinsics = read_mvsnet_camera(scene / "cams" / f"{name}_cam.txt")
        depth = read_pfm(scene / "rendered_depth_maps" / f"{name}.pfm")
        if depth.shape != image.shape:
            raise ValueError(f"{scene.name}/{name}: depth {depth.shape} and image {image.shape} differ in size")
        return resize_view(image, DepthView(depth, intrinsics, world_to_camera), self.size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene, reference, source = self.pairs[index]
        image0, view0 = self.load_view(scene, reference)
        image1, view1 = self.load_view(scene, source)
        cells1, offsets1 = depth_targets(view0, view1, self.stride, self.depth_tolerance)
        if self.photometric is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image0, image1 = self.photometric(image0, rng), self.photometric(image1, rng)
        sample = make_sample(image0, image1, cells1, offsets1)
        sample["intrinsics0"] = torch.from_numpy(view0.intrinsics)
        sample["intrinsics1"] = torch.from_numpy(view1.intrinsics)
        sample["pose01"] = torch.from_numpy(view1.world_to_camera @ np.linalg.inv(view0.world_to_camera))
        return sample


class RandomPairs(Dataset):
    """``pairs_per_epoch`` pairs drawn at random (with replacement) from a fixed-size dataset each epoch."""

    def __init__(self, dataset: Dataset, pairs_per_epoch: int, seed: int = 0) -> None:
        self.dataset = dataset
        self.pairs_per_epoch = pairs_per_epoch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.dataset[int(rng.integers(len(self.dataset)))]


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack the keys every sample has (datasets may add extra keys)."""
    keys = set(samples[0]).intersection(*samples[1:])
    return {k: torch.stack([s[k] for s in samples]) for k in sorted(keys)}
