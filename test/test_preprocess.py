"""Letterbox preprocessing and the exact mapping back to original pixels."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coarse_loftr_ros.errors import ImageError
from coarse_loftr_ros.preprocess import Letterbox, bit_depth, check_size, to_8bit, to_grayscale, to_model_input

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
        (np.zeros((10, 10, 2), np.uint8), r"shape \(10, 10, 2\): 2 channels; accepted layouts"),
        (np.zeros((2, 2, 2, 2), np.uint8), r"4 dimensions .* not one image; accepted layouts"),
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


ACCEPTED = "accepted layouts: HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA)"


@pytest.mark.parametrize(
    "shape, problem",
    [
        ((3, 480, 640), r"shape \(3, 480, 640\), channels first \(CxHxW\); pass np.moveaxis\(image, 0, -1\)"),
        ((1, 480, 640, 3), r"shape \(1, 480, 640, 3\), a batch of one image; pass image\[0\]"),
        ((307200,), r"is 1-D \(shape \(307200,\)\)"),
        ((), r"is 0-D"),
        ((2, 480, 640, 3), r"has 4 dimensions"),
    ],
)
def test_wrong_layouts_name_the_problem_and_the_accepted_layouts(shape, problem):
    image = np.zeros(shape, np.uint8)
    for check in (lambda: check_size(image, 16), lambda: to_model_input(image, INPUT), lambda: to_grayscale(image)):
        with pytest.raises(ImageError, match=problem) as error:
            check()
        message = str(error.value)
        assert ACCEPTED in message and "\n" not in message and "smaller than one coarse cell" not in message


def test_the_matcher_refuses_wrong_layouts_with_the_same_message():
    from coarse_loftr_ros import Matcher

    matcher = Matcher()
    with pytest.raises(ImageError, match="channels first") as error:
        matcher.match(np.zeros((3, 480, 640), np.uint8), np.zeros((480, 640), np.uint8))
    assert ACCEPTED in str(error.value)
    with pytest.raises(ImageError, match="a batch of one image"):
        matcher.match_next(np.zeros((1, 480, 640, 3), np.uint8))


@pytest.mark.parametrize("size", [(10000, 20), (20, 10000), (6000, 100)])
def test_aspect_ratios_that_leave_less_than_a_cell_are_refused(size):
    image = np.full(size[::-1], 128, np.uint8)
    with pytest.raises(ImageError, match="less than one coarse cell") as error:
        to_model_input(image, INPUT, stride=16)
    assert "\n" not in str(error.value) and f"{size[0]}x{size[1]} pixels" in str(error.value)


def test_the_aspect_limit_is_one_cell_after_the_resize():
    # 640x480 input, stride 16: a width:height of 40:1 gives a 16-pixel-high resized image.
    tensor, box = to_model_input(np.zeros((25, 1000), np.uint8), INPUT, stride=16)
    assert box.resized_size == (640, 16)
    with pytest.raises(ImageError, match="less than one coarse cell"):
        to_model_input(np.zeros((24, 1000), np.uint8), INPUT, stride=16)  # 640x15


def test_the_matcher_refuses_an_image_that_shrinks_below_a_cell():
    from coarse_loftr_ros import Matcher

    matcher = Matcher()
    with pytest.raises(ImageError, match="less than one coarse cell"):
        matcher.match(np.full((20, 10000), 128, np.uint8), np.full((480, 640), 128, np.uint8))


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])
def test_16_bit_images_are_scaled_by_their_data_bit_depth(bits):
    rng = np.random.default_rng(bits)
    gray = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    gray[0, 0] = 255  # the brightest pixel sets the depth
    top = (1 << bits) - 1
    image16 = np.round(gray.astype(np.float64) * top / 255).astype(np.uint16)
    assert bit_depth(image16) == bits
    assert np.abs(to_grayscale(image16).astype(int) - gray).max() <= 1
    if bits == 8:
        assert np.array_equal(to_8bit(image16), gray)  # 8-bit data in a 16-bit container: unchanged


def test_the_bit_depth_is_the_smallest_that_holds_the_maximum():
    assert [bit_depth(np.uint16([[v]])) for v in (0, 255, 256, 1023, 1024, 4095, 4096, 16384, 65535)] == [8, 8, 10, 10, 12, 12, 14, 16, 16]
    assert bit_depth(np.zeros((2, 2), np.uint8)) == 8


def test_8_bit_data_in_16_bit_container_matches_as_well_as_uint8():
    """The issue's case: a 16 px shift of a real photograph, as uint8 and as uint16 holding 0-255."""
    skimage_data = pytest.importorskip("skimage.data")
    from coarse_loftr_ros import Matcher

    photo = cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY), (656, 480))
    image0, image1 = photo[:, :640], photo[:, 16:656]
    matcher = Matcher()
    as_uint8 = matcher.match(image0, image1)
    as_uint16 = matcher.match(image0.astype(np.uint16), image1.astype(np.uint16))
    assert len(as_uint16) == len(as_uint8) > 200
    np.testing.assert_array_equal(np.sort(as_uint16.confidence), np.sort(as_uint8.confidence))
