"""The exported ONNX graph: valid, TensorRT-friendly, and equal to torch and to numpy extraction."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from coarse_loftr_ros.backends.base import INPUT_NAMES, OUTPUT_NAMES, RawMatches  # noqa: E402
from coarse_loftr_ros.extraction import extract_matches  # noqa: E402
from coarse_loftr_train.checkpoint import load_model  # noqa: E402
from coarse_loftr_train.export import ExportableMatcher, ExtractionConfig, export_onnx  # noqa: E402


def _inputs(frames, a=0, b=2):
    import cv2

    return [(cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0)[None, None] for i in (a, b)]


def _as_set(raw: RawMatches) -> set[tuple[int, int]]:
    return set(zip(raw.cells0.tolist(), raw.cells1.tolist()))


def test_graph_is_valid_static_and_tensorrt_friendly(exported_model):
    proto = onnx.load(str(exported_model))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) <= 17
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims), f"{value.name} has a dynamic dimension"
    ops = {node.op_type for node in proto.graph.node}
    assert "TopK" in ops
    assert not ops & {"NonZero", "Einsum", "Loop", "If"}
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert metadata["coarse_loftr.stride"] == "16" and metadata["coarse_loftr.top_k"] == "1024"


def test_onnx_runtime_equals_torch(exported_model, released_checkpoint, freiburg_frames):
    x0, x1 = _inputs(freiburg_frames)
    session = ort.InferenceSession(str(exported_model), providers=["CPUExecutionProvider"])
    ours = RawMatches.from_outputs(dict(zip(OUTPUT_NAMES, session.run(None, {"image0": x0, "image1": x1}))))
    wrapper = ExportableMatcher(load_model(released_checkpoint)).eval()
    with torch.no_grad():
        expected = RawMatches.from_outputs(
            {n: t.numpy() for n, t in zip(OUTPUT_NAMES, wrapper(torch.from_numpy(x0), torch.from_numpy(x1)))}
        )
    assert len(ours.confidence) > 300
    assert _as_set(ours) == _as_set(expected)
    np.testing.assert_allclose(np.sort(ours.confidence), np.sort(expected.confidence), atol=1e-5)
    assert np.all(np.diff(ours.confidence) <= 0)


def test_in_graph_extraction_equals_numpy_on_released_matrix(exported_model, released_onnx, freiburg_frames):
    """Our graph (mutual NN, border 1) and numpy extraction of the released model's matrix agree."""
    x0, x1 = _inputs(freiburg_frames, 3, 5)
    released = ort.InferenceSession(str(released_onnx), providers=["CPUExecutionProvider"])
    (matrix, _) = released.run(None, {"img0": x0, "img1": x1})
    reference = extract_matches(matrix, (40, 30), (40, 30), 16, threshold=0.0, border=1)
    session = ort.InferenceSession(str(exported_model), providers=["CPUExecutionProvider"])
    ours = RawMatches.from_outputs(dict(zip(OUTPUT_NAMES, session.run(None, {"image0": x0, "image1": x1}))))
    assert _as_set(ours) == _as_set(reference)
    np.testing.assert_allclose(ours.keypoints0[0], reference.keypoints0[0])


def test_export_other_size_and_top_k(tmp_path, released_checkpoint, freiburg_frames):
    import cv2

    model = load_model(released_checkpoint)
    model.config = model.config.with_input_size(320, 256)
    path = export_onnx(model, tmp_path / "small.onnx", ExtractionConfig(top_k=50, threshold=0.05, border=0))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 1, 256, 320]
    x = [(cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (320, 256)).astype(np.float32) / 255)[None, None] for f in freiburg_frames[:2]]
    outputs = dict(zip(OUTPUT_NAMES, session.run(None, {"image0": x[0], "image1": x[1]})))
    assert outputs["confidence"].shape == (1, 50)
    raw = RawMatches.from_outputs(outputs)
    assert 0 < len(raw.confidence) <= 50
    assert raw.confidence.min() > 0.05
    assert raw.keypoints0.max() <= 320 - 16
