"""Image -> model input, and model-input pixels -> original pixels.

Resize policy: **letterbox**. The image is scaled by one factor, keeping its aspect
ratio, so that it fits the model input, and placed at the top-left corner; the rest of
the input is zero (black). No content is cropped, nothing is stretched, and the mapping
back is exact and the same for x and y. Matches whose model-input point falls in the
padding are dropped by the Matcher.

Coordinates follow OpenCV: x right, y down, pixel centres at integers. ``cv2.resize``
aligns pixel centres, so a model-input point ``p`` maps back to ``(p + 0.5) / scale - 0.5``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ImageError, OptionError


@dataclass(frozen=True)
class Letterbox:
    """Placement of an original image inside the model input.

    Attributes:
        scale: model-input pixels per original pixel.
        original_size: (width, height) of the original image.
        resized_size: (width, height) the image occupies in the model input.
        input_size: (width, height) of the model input.
    """

    scale: float
    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    input_size: tuple[int, int]

    @classmethod
    def fit(cls, original_size: tuple[int, int], input_size: tuple[int, int]) -> "Letterbox":
        width, height = original_size
        scale = min(input_size[0] / width, input_size[1] / height)
        resized = (min(input_size[0], max(1, round(width * scale))), min(input_size[1], max(1, round(height * scale))))
        return cls(scale, (width, height), resized, tuple(input_size))

    @property
    def factors(self) -> tuple[float, float]:
        """(x, y) model-input pixels per original pixel, each axis as resized (``scale`` rounded)."""
        return self.resized_size[0] / self.original_size[0], self.resized_size[1] / self.original_size[1]

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Model-input pixel coordinates (N, 2) -> original image pixel coordinates (N, 2)."""
        scale = np.array(self.factors, np.float32)
        return ((points + 0.5) / scale - 0.5).astype(np.float32)

    def to_original_clipped(self, points: np.ndarray) -> np.ndarray:
        """``to_original``, clipped to the image (sub-cell refinement may step past the edge)."""
        mapped = self.to_original(points)
        upper = np.array(self.original_size, np.float32) - 1.0
        return np.clip(mapped, 0.0, upper, out=mapped)

    def to_model(self, points: np.ndarray) -> np.ndarray:
        """Original image pixel coordinates (N, 2) -> model-input pixel coordinates (N, 2)."""
        scale = np.array(self.factors, np.float32)
        return ((points + 0.5) * scale - 0.5).astype(np.float32)

    def to_model_matrix(self) -> np.ndarray:
        """``to_model`` as a float64 3x3 matrix on homogeneous points [x, y, 1]."""
        sx, sy = self.factors
        return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])

    def inside(self, points: np.ndarray) -> np.ndarray:
        """Bool (N,): model-input points that lie on the image, not on the padding."""
        return (points[:, 0] < self.resized_size[0]) & (points[:, 1] < self.resized_size[1])


class ImageSizeError(ImageError):
    """An image the model cannot use: smaller than one coarse cell, or so narrow that it
    covers less than one cell across once resized to the model input."""


ACCEPTED_LAYOUTS = "HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA)"
BIT_DEPTHS = (8, 10, 12, 14, 16)


def check_layout(image: np.ndarray) -> None:
    """Raise ImageError, naming the problem and the accepted layouts, unless ``image`` is one
    uint8/uint16 image laid out HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA)."""
    shape = tuple(image.shape)
    problem = None
    if image.ndim < 2:
        problem = f"is {image.ndim}-D (shape {shape}), not an image of rows and columns; reshape it to (height, width)"
    elif image.ndim == 4 and shape[0] == 1:
        problem = f"has shape {shape}, a batch of one image; pass image[0]"
    elif image.ndim > 3:
        problem = f"has {image.ndim} dimensions (shape {shape}), not one image"
    elif image.ndim == 3 and shape[2] not in (1, 3, 4):
        if shape[0] in (1, 3, 4):
            problem = f"has shape {shape}, channels first (CxHxW); pass np.moveaxis(image, 0, -1)"
        else:
            problem = f"has shape {shape}: {shape[2]} channels"
    if problem is not None:
        raise ImageError(f"image {problem}; accepted layouts: {ACCEPTED_LAYOUTS}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"unsupported image dtype {image.dtype}; pass uint8 or uint16 pixels (e.g. float [0, 1] images as (image * 255).astype(np.uint8))")


def bit_depth(image: np.ndarray) -> int:
    """The bit depth of the data in a uint16 image: the smallest of 8, 10, 12, 14, 16 bits
    that holds its largest value (8 for uint8)."""
    if image.dtype == np.uint8:
        return 8
    largest = int(image.max()) if image.size else 0
    return next(bits for bits in BIT_DEPTHS if largest < (1 << bits))


def to_8bit(image: np.ndarray) -> np.ndarray:
    """uint8 unchanged; uint16 scaled from its data's ``bit_depth`` to 0-255.

    So 8-bit data in a 16-bit container keeps its values, a 12-bit camera's 0-4095 becomes
    0-255 and full-range 16-bit data is divided by 257. The depth is decided per image:
    a 12-bit frame whose brightest pixel is below 1024 is scaled as 10-bit data (brighter).
    """
    if image.dtype != np.uint16:
        return image
    bits = bit_depth(image)
    if bits == 8:
        return image.astype(np.uint8)
    return cv2.convertScaleAbs(image, alpha=255.0 / ((1 << bits) - 1))  # rounded, saturated


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """uint8 or uint16 image, HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) -> uint8 HxW.

    16-bit images are scaled by their data's bit depth (``to_8bit``).
    """
    image = np.asarray(image)
    check_layout(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    return to_8bit(image)


def check_size(image: np.ndarray, stride: int, input_size: tuple[int, int] | None = None) -> None:
    """Raise ImageError unless the image has an accepted layout (``check_layout``) and covers
    at least one coarse cell (``stride`` pixels) in each direction, in the image itself and,
    given the model ``input_size`` (width, height), after the letterbox resize (an image
    10000x20 would shrink to 640x1)."""
    image = np.asarray(image)
    check_layout(image)
    height, width = image.shape[:2]
    if height < stride or width < stride:
        raise ImageSizeError(f"image of {width}x{height} pixels is smaller than one coarse cell ({stride}x{stride}); pass a larger image")
    if input_size is not None:
        resized = Letterbox.fit((width, height), input_size).resized_size
        if min(resized) < stride:
            raise ImageSizeError(
                f"image of {width}x{height} pixels has an aspect ratio of {max(width, height) / min(width, height):.0f}:1 and "
                f"becomes {resized[0]}x{resized[1]} in the {input_size[0]}x{input_size[1]} model input, less than one coarse cell "
                f"({stride} px) across; crop it to at most {input_size[0] // stride}:1 (width:height) or 1:{input_size[1] // stride}"
            )


DEFAULT_INPUT_SIZE = (640, 480)
"""(width, height) of the model input when none is chosen: the size every model here was trained at."""
AUTO_INPUT_PIXELS = DEFAULT_INPUT_SIZE[0] * DEFAULT_INPUT_SIZE[1]
"""Pixel count ``auto_input_size`` aims at: that of the default input (307200)."""
MIN_INPUT_CELLS = 4
"""Fewest coarse cells a model input may have across and down."""
MAX_INPUT_PIXELS = 1280 * 1024
"""Largest model input in pixels (1310720, 4.3x the default): the dual-softmax logits grow with
the square of the cell count (two float32 [1, L, L] matrices, 105 MB each at this size)."""


class InputSizeError(OptionError):
    """A model input size the model cannot take (not a multiple of its stride, too small, too large)."""


def check_input_size(size: object, stride: int, max_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """``size`` as a (width, height) tuple of ints, or InputSizeError (one line).

    Accepted: whole multiples of ``stride`` (the model's coarse cell, pixels), at least
    ``MIN_INPUT_CELLS`` cells across and down, at most ``MAX_INPUT_PIXELS`` pixels in all and,
    given ``max_size`` (the model's largest (width, height), e.g. its position encoding's
    reach), at most that in each direction.
    """
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in size)
    ):
        raise InputSizeError(f"input size must be (width, height) in whole pixels, 'auto' or None, got {size!r}")
    width, height = int(size[0]), int(size[1])
    if width % stride or height % stride:
        below = (max(stride, width // stride * stride), max(stride, height // stride * stride))
        raise InputSizeError(
            f"input size {width}x{height} is not a multiple of the model's stride {stride} px; use e.g. {below[0]}x{below[1]}"
        )
    smallest = MIN_INPUT_CELLS * stride
    if width < smallest or height < smallest:
        raise InputSizeError(f"input size {width}x{height} is too small: at least {smallest}x{smallest} ({MIN_INPUT_CELLS} cells of {stride} px each way)")
    if width * height > MAX_INPUT_PIXELS:
        raise InputSizeError(
            f"input size {width}x{height} has {width * height} pixels, more than the limit {MAX_INPUT_PIXELS} (1280x1024): "
            "matching memory grows with the square of the pixel count"
        )
    if max_size is not None and (width > max_size[0] or height > max_size[1]):
        raise InputSizeError(f"input size {width}x{height} exceeds the model's largest input {max_size[0]}x{max_size[1]}")
    return width, height


def auto_input_size(
    image_size: tuple[int, int], stride: int, pixels: int = AUTO_INPUT_PIXELS, max_size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The model input (width, height) that follows an image's aspect ratio at about ``pixels`` pixels.

    Rule: the exact size of that area and aspect ratio, ``W = sqrt(pixels * w / h)``, ``H =
    sqrt(pixels * h / w)``, each rounded to the nearest multiple of ``stride`` (halves up),
    then kept within ``MIN_INPUT_CELLS`` cells and ``max_size`` (the model's, default 256 cells)
    each way and, shrinking the longer side by whole cells, ``MAX_INPUT_PIXELS``. A 1226x370
    KITTI frame gives 1008x304 (306432 px, 63x19 cells of 16 px), a 4:3 image 640x480,
    1280x720 gives 736x416.
    """
    width, height = image_size
    if width < 1 or height < 1:
        raise InputSizeError(f"cannot choose an input size for an image of {width}x{height} pixels")
    largest = max_size or (256 * stride, 256 * stride)

    def cells(ideal: float, limit: int) -> int:
        return min(max(MIN_INPUT_CELLS, math.floor(ideal / stride + 0.5)), limit // stride)

    columns = cells(math.sqrt(pixels * width / height), largest[0])
    rows = cells(math.sqrt(pixels * height / width), largest[1])
    while columns * rows * stride * stride > MAX_INPUT_PIXELS:
        if columns >= rows:
            columns -= 1
        else:
            rows -= 1
    return columns * stride, rows * stride


AUTO_MIN_FILL = 0.8
"""``follow_input_size`` keeps the model's own input while an image letterboxed into it fills at
least this share of it (3:2 fills 0.89, 16:9 and square images 0.75, KITTI's 1226x370 0.33): on
the castle views (3:2) and the stereo pair (741x500) the camera-shaped input measured 2-3 points
of pose AUC and stereo accuracy lower than the letterbox (docs/model.md), on the KITTI drive 35
points higher at 10 frames apart."""


def follow_input_size(
    image_size: tuple[int, int], model_size: tuple[int, int], stride: int, max_size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The model input for an image under ``input_size="auto"``: ``model_size`` (width, height)
    while the letterboxed image fills at least ``AUTO_MIN_FILL`` of it, else
    ``auto_input_size(image_size)``: the same area at the image's aspect ratio."""
    resized = Letterbox.fit(image_size, model_size).resized_size
    if resized[0] * resized[1] >= AUTO_MIN_FILL * model_size[0] * model_size[1]:
        return tuple(model_size)
    return auto_input_size(image_size, stride, max_size=max_size)


def to_model_input(image: np.ndarray, input_size: tuple[int, int], stride: int = 8) -> tuple[np.ndarray, Letterbox]:
    """Any supported image -> float32 [1, 1, H, W] in [0, 1] and its ``Letterbox``.

    ``input_size`` is the model input (width, height) in pixels, ``stride`` the model's coarse
    cell in pixels: an image that would not cover one cell across after the resize is
    refused (``check_size``). The default 8 is the finest coarse level of any model here, so
    a caller that does not know its model's stride is refused only what no model can use;
    pass the model's own for its exact limit.
    """
    check_size(image, stride, input_size)
    gray = to_grayscale(image)
    height, width = gray.shape
    letterbox = Letterbox.fit((width, height), input_size)
    if letterbox.resized_size != (width, height):
        shrinking = letterbox.scale < 1.0
        gray = cv2.resize(gray, letterbox.resized_size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    tensor = np.zeros((1, 1, input_size[1], input_size[0]), np.float32)
    np.multiply(gray, np.float32(1.0 / 255.0), out=tensor[0, 0, : gray.shape[0], : gray.shape[1]])
    return tensor, letterbox
