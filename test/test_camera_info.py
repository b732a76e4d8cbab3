"""cameras.json files as sensor_msgs/CameraInfo fields, and the checks the node makes on them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from coarse_loftr_ros.ros.camera_info import (
    CameraFileError,
    PinholeCamera,
    camera_info_fields,
    intrinsics,
    load_cameras,
    size_matches,
)
from shared_data import SHARED, require

KITTI_CAMERAS = SHARED / "data" / "kitti_seq_dev" / "cameras.json"


def test_the_kitti_cameras_file_is_one_camera():
    cameras = load_cameras(require(KITTI_CAMERAS))
    assert list(cameras) == ["camera"]
    camera = cameras["camera"]
    assert (camera.width, camera.height) == (1226, 370)
    np.testing.assert_array_equal(camera.matrix, [[707.0912, 0, 601.8873], [0, 707.0912, 183.1104], [0, 0, 1]])
    assert camera.distortion == () and camera.distortion_model == "plumb_bob"


def test_a_stereo_file_names_each_camera(tmp_path):
    left = {"fx": 500, "fy": 501, "cx": 320, "cy": 240, "width": 640, "height": 480,
            "distortion": [0.1, -0.2, 0.001, 0.002, 0.05]}
    right = {**left, "cx": 318.5, "distortion": [0.1, -0.2, 0, 0, 0.05, 0.01, 0.02, 0.03]}
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps({"left": left, "right": right}))
    cameras = load_cameras(path)
    assert list(cameras) == ["left", "right"]
    assert cameras["left"].distortion == (0.1, -0.2, 0.001, 0.002, 0.05) and cameras["left"].distortion_model == "plumb_bob"
    assert cameras["right"].cx == 318.5 and cameras["right"].distortion_model == "rational_polynomial"


@pytest.mark.parametrize("document, match", [
    ({"fx": 500, "fy": 500, "cx": 320, "cy": 240, "width": 640}, "missing height"),
    ({"fx": 500, "fy": 500, "cx": 320, "cy": 240, "width": 640, "height": 480, "model": "fisheye"}, "not supported"),
    ({"fx": 0, "fy": 500, "cx": 320, "cy": 240, "width": 640, "height": 480}, "must be > 0"),
    ({"fx": 500, "fy": 500, "cx": 320, "cy": 240, "width": 640, "height": 480, "distortion": [0.1, 0.2]}, "2 values"),
    ({"left": {"fx": "wide"}}, r"\[left\]: missing"),
    ([], "expected one camera"),
])
def test_bad_cameras_files_are_one_line_errors(tmp_path, document, match):
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CameraFileError, match=match) as error:
        load_cameras(path)
    assert "\n" not in str(error.value)


def test_an_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(CameraFileError, match="cannot read cameras file"):
        load_cameras(tmp_path / "missing.json")


def test_camera_info_fields_and_back():
    camera = PinholeCamera(640, 480, 500.0, 502.0, 319.5, 239.5, (0.1, -0.2, 0.0, 0.0, 0.05))
    fields = camera_info_fields(camera)
    assert (fields["width"], fields["height"], fields["distortion_model"]) == (640, 480, "plumb_bob")
    assert fields["p"] == [500.0, 0.0, 319.5, 0.0, 0.0, 502.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert fields["r"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    k, d = intrinsics(SimpleNamespace(**fields))
    np.testing.assert_array_equal(k, camera.matrix)
    np.testing.assert_array_equal(d, [0.1, -0.2, 0.0, 0.0, 0.05])
    assert camera_info_fields(PinholeCamera(640, 480, 500.0, 500.0, 320.0, 240.0))["d"] == [0.0] * 5


def test_a_default_camera_info_has_no_intrinsics_and_sizes_are_compared():
    default = SimpleNamespace(k=[0.0] * 9, d=[], width=0, height=0)
    assert intrinsics(default) is None
    info = SimpleNamespace(**camera_info_fields(PinholeCamera(1226, 370, 707.0, 707.0, 601.0, 183.0)))
    assert size_matches(info, 1226, 370)
    assert not size_matches(info, 640, 480) and not size_matches(default, 1226, 370)
