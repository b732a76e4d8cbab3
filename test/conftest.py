"""Shared fixtures: paths to ../shared and models exported from the released weights.

Tests that need ../shared skip with a message when it is absent (a user's fresh clone).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared_data import REPO, SHARED, require  # noqa: F401  (fixtures below use them)

RELEASED_PT = SHARED / "weights" / "coarse_loftr_trt_student.pt"
RELEASED_ONNX = SHARED / "weights" / "coarse_loftr_trt_student.onnx"
FREIBURG = SHARED / "data" / "freiburg_sequence"


@pytest.fixture(scope="session")
def released_checkpoint() -> Path:
    """The released reduced-model checkpoint (../shared)."""
    return require(RELEASED_PT)


@pytest.fixture(scope="session")
def released_onnx() -> Path:
    """The released reduced model in ONNX, full confidence matrix out (../shared)."""
    return require(RELEASED_ONNX)


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory: pytest.TempPathFactory, released_checkpoint: Path) -> Path:
    """An ONNX file exported by our code from the released weights (640x480, top-1024)."""
    pytest.importorskip("torch")
    from coarse_loftr_train.checkpoint import load_model
    from coarse_loftr_train.export import export_onnx

    path = tmp_path_factory.mktemp("models") / "released_student.onnx"
    return export_onnx(load_model(released_checkpoint), path)


@pytest.fixture(scope="session")
def freiburg_frames() -> list[np.ndarray]:
    """The 17 consecutive 640x480 BGR frames of ../shared/data/freiburg_sequence."""
    import cv2

    files = sorted(require(FREIBURG).glob("*.png"))
    return [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]


@pytest.fixture(scope="session")
def motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Middlebury motorcycle stereo pair (BGR) and its left disparity (scikit-image)."""
    import cv2
    import skimage.data

    left, right, disparity = skimage.data.stereo_motorcycle()
    return cv2.cvtColor(left, cv2.COLOR_RGB2BGR), cv2.cvtColor(right, cv2.COLOR_RGB2BGR), disparity
