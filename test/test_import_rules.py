"""The import rule of ARCHITECTURE.md: the package root is light, the runtime never loads torch."""

import subprocess
import sys


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    process = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(process.stdout.split())


def test_package_root_imports_nothing_heavy():
    loaded = _loaded_after("import coarse_loftr_ros")
    assert not loaded & {"onnxruntime", "cv2", "torch", "tensorrt", "rclpy", "numpy"}


def test_runtime_path_does_not_import_torch(exported_model, freiburg_frames, tmp_path):
    import cv2

    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), freiburg_frames[0])
    code = f"""
import cv2
from coarse_loftr_ros import Matcher
from coarse_loftr_ros.matching.overlay import draw_matches
m = Matcher({str(exported_model)!r})
image = cv2.imread({str(frame)!r})
r = m.match(image, image)
m.match_next(image); m.match_next(image)
draw_matches(image, image, r)
assert len(r) > 100
"""
    loaded = _loaded_after(code)
    assert "onnxruntime" in loaded
    assert not loaded & {"torch", "tensorrt", "pycuda", "rclpy", "coarse_loftr_train"}


def test_coarse_loftr_error_imports_from_the_package_root_without_numpy():
    loaded = _loaded_after(
        "from coarse_loftr_ros import CoarseLoftrError\n"
        "from coarse_loftr_ros.errors import ImageError, ModelError\n"
        "assert issubclass(ImageError, CoarseLoftrError) and issubclass(ModelError, CoarseLoftrError)"
    )
    assert "coarse_loftr_ros" in loaded
    assert not loaded & {"numpy", "cv2", "onnxruntime", "torch", "rclpy"}
