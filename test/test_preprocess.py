"""Letterbox preprocessing and the exact mapping back to original pixels."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coarse_loftr_ros.errors import ImageError
from coarse_loftr_ros.preprocess import Letterbox, check_size, to_grayscale, to_model_input

INPUT = (640, 480)


def _dot_image(size: tuple[int, int], centre: tuple[float, float], sigma: float) -> np.ndarray:
    """uint8 image with a Gaussian blob at a sub-pixel centre (OpenCV pixel-centre convention)."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
    return np.round(blob * 255).astype(np.uint8)


def _centroid(image: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    weight = image.astype(np.float64)
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


@pytest.mark.parametrize("size", [(1280, 960), (741, 500), (320, 240), (480, 640), (1000, 300), (640, 480)])
def test_blob_maps_back_to_where_it_was(size):
    centre = (size[0] * 0.37 + 0.3, size[1] * 0.61 - 0.2)
    sigma = max(size) / 40
    tensor, box = to_model_input(_dot_image(size, centre, sigma), INPUT)
    assert tensor.shape == (1, 1, 480, 640) and tensor.dtype == np.float32
    found_in_model = _centroid(tensor[0, 0])
    np.testing.assert_allclose(box.to_original(found_in_model[None].astype(np.float32))[0], centre, atol=0.05 * size[0] / 640 + 0.05)
    np.testing.assert_allclose(box.to_model(np.float32([centre]))[0], found_in_model, atol=0.06)


def test_letterbox_keeps_aspect_and_pads_bottom_right():
    tensor, box = to_model_input(np.full((300, 1000), 200, np.uint8), INPUT)
    assert box.resized_size == (640, 192)
    assert np.all(tensor[0, 0, :192] > 0.78) and np.all(tensor[0, 0, 192:] == 0)
    assert box.inside(np.float32([[639, 191], [10, 192]])).tolist() == [True, False]


@given(
    width=st.integers(16, 3000),
    height=st.integers(16, 3000),
    x=st.floats(0, 1),
    y=st.floats(0, 1),
)
@settings(max_examples=200, deadline=None)
def test_mapping_round_trip(width, height, x, y):
    box = Letterbox.fit((width, height), INPUT)
    assert box.resized_size[0] <= 640 and box.resized_size[1] <= 480
    assert box.resized_size[0] == 640 or box.resized_size[1] == 480
    point = np.float32([[x * (width - 1), y * (height - 1)]])
    np.testing.assert_allclose(box.to_original(box.to_model(point)), point, rtol=1e-5, atol=1e-2)


def test_layouts_and_depths_give_the_same_gray():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    assert np.array_equal(to_grayscale(bgr), gray)
    assert np.array_equal(to_grayscale(bgra), gray)
    assert np.array_equal(to_grayscale(gray[:, :, None]), gray)
    assert np.array_equal(to_grayscale(gray.astype(np.uint16) * 257), gray)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((10, 10), np.float64), "unsupported image dtype"),
        (np.zeros((10, 10, 2), np.uint8), "unsupported image shape"),
        (np.zeros((2, 2, 2, 2), np.uint8), "unsupported image shape"),
    ],
)
def test_unsupported_images_are_one_line_errors(image, message):
    with pytest.raises(ImageError, match=message) as error:
        to_model_input(image, INPUT)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("shape", [(0, 0), (1, 1), (15, 200), (200, 15)])
def test_images_smaller_than_a_cell_are_rejected(shape):
    with pytest.raises(ImageError, match="smaller than one coarse cell"):
        check_size(np.zeros(shape, np.uint8), 16)
