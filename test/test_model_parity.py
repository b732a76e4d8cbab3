"""Our PyTorch student with the released checkpoint equals the released ONNX model."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from coarse_loftr_train.checkpoint import load_model  # noqa: E402


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0)[None, None]


def test_confidence_matrix_matches_released_onnx(released_checkpoint, released_onnx, freiburg_frames, motorcycle):
    import cv2

    model = load_model(released_checkpoint)
    session = ort.InferenceSession(str(released_onnx), providers=["CPUExecutionProvider"])
    left = cv2.resize(motorcycle[0], (640, 480), interpolation=cv2.INTER_AREA)
    right = cv2.resize(motorcycle[1], (640, 480), interpolation=cv2.INTER_AREA)
    pairs = [(freiburg_frames[0], freiburg_frames[3]), (left, right)]
    for image0, image1 in pairs:
        x0, x1 = _gray(image0), _gray(image1)
        (reference, _) = session.run(None, {"img0": x0, "img1": x1})
        with torch.no_grad():
            ours = model(torch.from_numpy(x0), torch.from_numpy(x1)).numpy()
        assert ours.shape == reference.shape == (1, 1200, 1200)
        assert np.abs(ours - reference).max() <= 1e-4
        # Not a degenerate agreement: the matrices carry real, peaked confidences.
        assert reference.max() > 0.1


def test_two_stage_forward_equals_single_call(released_checkpoint, freiburg_frames):
    model = load_model(released_checkpoint)
    x0, x1 = (torch.from_numpy(_gray(f)) for f in freiburg_frames[:2])
    with torch.no_grad():
        single = model(x0, x1)
        _, staged = model.match_features(model.extract_features(x0), model.extract_features(x1))
    assert torch.allclose(single, staged, atol=1e-6)
