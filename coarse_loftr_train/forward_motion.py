"""Training pairs of a camera moving forward through a scene with depth.

A homography scales the whole image by one factor. A camera that drives forward does not:
near things grow more than far ones, about a focus of expansion (where the camera is heading),
and the ground plane stretches. Pairs 10-20 frames apart on a car (docs/evaluation.md,
``kitti_seq_dev``) differ that way, and the homography pairs never show it.

A pair here is one photograph seen as a surface with a smooth random depth: image 0 is a crop
of the photograph (as in ``sample_homography_pair``), image 1 the view of a camera moved
forward by ``expansion - 1`` times the median depth (so the scene at its median depth grows by
``expansion``), slightly sideways and turned by up to ``rotation`` degrees. The depth is defined
in image 1 (the nearer view), so image 1 is rendered exactly by sampling the photograph, and
where each cell of image 0 lands in image 1 is found by inverting that mapping (fixed-point
iterations, checked to ``INVERSE_TOLERANCE_PX``). Pixels are model-input pixels of both views,
OpenCV convention (x right, y down, pixel centres at integers).

Depth is relative (the median is 1): only the ratio of the motion to the depth shapes a view.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .datasets import HomographyPairs, _corner_targets, _crop_corners, cell_points, coarse_targets, make_sample, read_gray

INVERSE_TOLERANCE_PX = 0.05
"""A cell of image 0 counts as seen in image 1 only where the inverted mapping reproduces it to this."""


@dataclass(frozen=True)
class ForwardMotionSampling:
    """Random forward motion between the two views.

    Attributes:
        probability: share of the training pairs drawn this way (the rest are homography pairs).
        expansion: growth of the scene at its median depth from image 0 to image 1 (log-uniform).
        depth_range: far / near depth of the scene (the depth field spans this ratio).
        focal: focal length as a share of the image width (uniform).
        focus_jitter: the principal point moves by up to this share of the image size.
        sideways: sideways and vertical motion, as a share of the forward motion.
        rotation: degrees of camera rotation about each axis (uniform, either way).
        crop_scale: crop side of the photograph relative to the largest crop that fits.
    """

    probability: float = 0.0
    expansion: tuple[float, float] = (1.15, 2.0)
    depth_range: float = 6.0
    focal: tuple[float, float] = (0.55, 1.0)
    focus_jitter: float = 0.1
    sideways: float = 0.1
    rotation: float = 3.0
    crop_scale: tuple[float, float] = (0.5, 1.0)


def _rotation(degrees: np.ndarray) -> np.ndarray:
    rx, ry, rz = np.deg2rad(degrees)
    x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    return z @ y @ x


def _depth_field(size: tuple[int, int], depth_range: float, rng: np.random.Generator) -> np.ndarray:
    """float32 HxW depth with median about 1: a smooth random field plus a vertical trend
    (farther towards the top or the bottom, as a road or a ceiling), spanning ``depth_range``."""
    width, height = size
    coarse = rng.uniform(-1.0, 1.0, (3, 4)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    trend = np.linspace(1.0, -1.0, height, dtype=np.float32)[:, None] * rng.uniform(-1.0, 1.0)
    field = field + trend
    field = (field - np.median(field)) / max(float(np.ptp(field)), 1e-6)  # spans 1, median 0
    return np.exp(field * np.log(depth_range)).astype(np.float32)


class _Motion:
    """The mapping from image-1 pixels to image-0 pixels through image 1's depth."""

    def __init__(self, K: np.ndarray, depth1: np.ndarray, rotation: np.ndarray, centre1_in_0: np.ndarray) -> None:
        self.K, self.K_inv = K, np.linalg.inv(K)
        self.depth1 = depth1
        self.rotation, self.translation = rotation, centre1_in_0

    def depth_at(self, points: np.ndarray) -> np.ndarray:
        """Bilinear depth at image-1 pixels (N, 2); the border value beyond the image."""
        height, width = self.depth1.shape
        x = np.clip(points[:, 0], 0, width - 1)
        y = np.clip(points[:, 1], 0, height - 1)
        x0 = np.minimum(np.floor(x).astype(int), width - 2)
        y0 = np.minimum(np.floor(y).astype(int), height - 2)
        fx, fy = x - x0, y - y0
        d = self.depth1
        top = d[y0, x0] * (1 - fx) + d[y0, x0 + 1] * fx
        bottom = d[y0 + 1, x0] * (1 - fx) + d[y0 + 1, x0 + 1] * fx
        return (top * (1 - fy) + bottom * fy).astype(np.float64)

    def to_image0(self, points1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image-1 pixels (N, 2) -> image-0 pixels (N, 2) and whether the point is in front of camera 0."""
        rays = np.c_[points1, np.ones(len(points1))] @ self.K_inv.T
        camera1 = rays * self.depth_at(points1)[:, None]
        camera0 = camera1 @ self.rotation.T + self.translation
        in_front = camera0[:, 2] > 1e-6
        z = np.where(in_front, camera0[:, 2], 1.0)
        return (camera0 @ self.K.T)[:, :2] / z[:, None], in_front

    def to_image1(self, points0: np.ndarray, iterations: int = 60) -> tuple[np.ndarray, np.ndarray]:
        """Image-0 pixels (N, 2) -> image-1 pixels, by fixed-point iteration; and where it converged."""
        points1 = points0.astype(np.float64).copy()
        for _ in range(iterations):
            mapped, _ = self.to_image0(points1)
            points1 += points0 - mapped  # the mapping shrinks about the focus: this converges
        mapped, in_front = self.to_image0(points1)
        converged = in_front & (np.linalg.norm(mapped - points0, axis=1) <= INVERSE_TOLERANCE_PX)
        return points1, converged


def sample_forward_motion_pair(
    source: np.ndarray, size: tuple[int, int], sampling: ForwardMotionSampling, rng: np.random.Generator, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two views of ``source`` at ``size`` (width, height), image 1 nearer the scene.

    Returns ``(image0, image1, points1, valid01, points0, valid10)``: the images (uint8), where
    each coarse cell of image 0 lands in image 1 and whether it is seen there, and the same
    from image 1 to image 0 (the inputs of ``datasets.coarse_targets``).
    """
    width, height = size
    corners = _crop_corners((source.shape[1], source.shape[0]), width / height, rng.uniform(*sampling.crop_scale), rng)
    source_to_0 = cv2.getPerspectiveTransform(corners.astype(np.float32), _corner_targets(size).astype(np.float32)).astype(np.float64)
    zero_to_source = np.linalg.inv(source_to_0)
    extent = corners[2, 0] - corners[0, 0]
    interpolation = cv2.INTER_AREA if extent > 1.5 * width else cv2.INTER_LINEAR
    image0 = cv2.warpPerspective(source, source_to_0, size, flags=interpolation, borderMode=cv2.BORDER_REFLECT101)

    focal = rng.uniform(*sampling.focal) * width
    centre = np.array([width - 1, height - 1]) / 2 + rng.uniform(-sampling.focus_jitter, sampling.focus_jitter, 2) * (width, height)
    K = np.array([[focal, 0, centre[0]], [0, focal, centre[1]], [0, 0, 1]])
    forward = np.exp(rng.uniform(*np.log(sampling.expansion))) - 1.0  # at median depth 1
    sideways = rng.uniform(-sampling.sideways, sampling.sideways, 2) * forward
    motion = _Motion(
        K,
        _depth_field(size, sampling.depth_range, rng),
        _rotation(rng.uniform(-sampling.rotation, sampling.rotation, 3)),
        np.array([sideways[0], sideways[1], forward]),
    )

    # Image 1: every pixel sampled from the photograph where it lies in image 0.
    ys, xs = np.mgrid[0:height, 0:width]
    pixels1 = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    in_image0, in_front = motion.to_image0(pixels1)
    in_source = np.c_[in_image0, np.ones(len(in_image0))] @ zero_to_source.T
    in_source = in_source[:, :2] / in_source[:, 2:3]
    in_source[~in_front] = -1e4  # behind camera 0: black
    maps = in_source.astype(np.float32).reshape(height, width, 2)
    image1 = cv2.remap(source, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    cells = cell_points(width // stride, height // stride, stride)
    points0, front10 = motion.to_image0(cells)
    points1, converged = motion.to_image1(cells)

    def inside(points: np.ndarray) -> np.ndarray:
        eps = 1e-6  # the edge cells themselves, up to rounding
        x, y = points[:, 0], points[:, 1]
        return np.isfinite(points).all(axis=1) & (x >= -eps) & (x <= width - 1 + eps) & (y >= -eps) & (y <= height - 1 + eps)

    return image0, image1, points1, converged & inside(points1), points0, front10 & inside(points0)


class ForwardMotionPairs(HomographyPairs):
    """``HomographyPairs`` with a share (``forward_motion.probability``) of forward-motion pairs.

    Whether pair ``index`` is a forward-motion pair, and its motion, are drawn from a stream of
    their own (``seed``, ``epoch``, ``index``, 1), so the homography pairs are the ones
    ``HomographyPairs`` draws with the same seed. Either view may be the nearer one.
    """

    def __init__(self, *args, forward_motion: ForwardMotionSampling, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.forward_motion = forward_motion

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        if rng.random() >= self.forward_motion.probability:
            return super().__getitem__(index)
        source = read_gray(self.files[int(rng.integers(len(self.files)))])
        image0, image1, points1, valid01, points0, valid10 = sample_forward_motion_pair(
            source, self.size, self.forward_motion, rng, self.stride
        )
        if self.photometric is not None:
            image0 = self.photometric(image0, rng)
            image1 = self.photometric(image1, rng)
        if rng.random() < 0.5:  # the camera may as well move backwards
            image0, image1 = image1, image0
            points1, valid01, points0, valid10 = points0, valid10, points1, valid01
        grid = (self.size[0] // self.stride, self.size[1] // self.stride)
        cells1, offsets1 = coarse_targets(points1, valid01, points0, valid10, grid, self.stride)
        return make_sample(image0, image1, cells1, offsets1)
