"""The exported ONNX graph: valid, TensorRT-friendly, and equal to torch and to numpy extraction."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from coarse_loftr_ros.backends.base import INPUT_NAMES, OUTPUT_NAMES, RawMatches  # noqa: E402
from coarse_loftr_ros.backends.extraction import extract_matches  # noqa: E402
from coarse_loftr_train.checkpoint import load_model  # noqa: E402
from coarse_loftr_train.export import ExportableMatcher, ExtractionConfig, export_onnx  # noqa: E402
from matching import assert_same_matches  # noqa: E402


def _inputs(frames, a=0, b=2):
    import cv2

    return [(cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0)[None, None] for i in (a, b)]


def _as_set(raw: RawMatches) -> set[tuple[int, int]]:
    return set(zip(raw.cells0.tolist(), raw.cells1.tolist()))


def _dims(value) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


def test_graph_is_valid_dynamic_in_size_only_and_tensorrt_friendly(exported_model):
    """Height and width are the only dynamic axes; K, the batch and the channels are declared."""
    proto = onnx.load(str(exported_model))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) <= 17
    for value in proto.graph.input:
        assert _dims(value) == [1, 1, "height", "width"]
    for value in proto.graph.output:
        assert _dims(value)[:2] == [1, 1024], f"{value.name} has a dynamic dimension"
    # The released weights have no learned refinement: 32 coarse channels, no fine ones.
    for suffix, names in ((".features.onnx", {"image": [1, 1, "height", "width"], "features": [1, 32, "rows", "columns"]}),
                          (".matching.onnx", {"features0": [1, 32, "rows", "columns"], "keypoints1": [1, 1024, 2]})):
        graph = onnx.load(str(exported_model.with_suffix(suffix))).graph
        declared = {v.name: _dims(v) for v in list(graph.input) + list(graph.output)}
        assert {k: declared[k] for k in names} == names
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
    """Our graph (mutual NN, default border 0) and numpy extraction of the released model's matrix agree."""
    x0, x1 = _inputs(freiburg_frames, 3, 5)
    released = ort.InferenceSession(str(released_onnx), providers=["CPUExecutionProvider"])
    (matrix, _) = released.run(None, {"img0": x0, "img1": x1})
    reference = extract_matches(matrix, (40, 30), (40, 30), 16, threshold=0.0, border=0)
    session = ort.InferenceSession(str(exported_model), providers=["CPUExecutionProvider"])
    ours = RawMatches.from_outputs(dict(zip(OUTPUT_NAMES, session.run(None, {"image0": x0, "image1": x1}))))
    assert _as_set(ours) == _as_set(reference)
    # The graph refines positions within the 3x3 cell neighbourhood; numpy keeps cell points.
    by_cell = dict(zip(reference.cells0.tolist(), reference.keypoints0))
    shifts = np.array([np.abs(p - by_cell[c]).max() for c, p in zip(ours.cells0.tolist(), ours.keypoints0)])
    assert shifts.max() <= 16 and np.median(shifts) < 4


def test_export_other_size_and_top_k(tmp_path, released_checkpoint, freiburg_frames):
    import cv2

    model = load_model(released_checkpoint)
    model.config = model.config.with_input_size(320, 256)
    path = export_onnx(model, tmp_path / "small.onnx", ExtractionConfig(top_k=50, threshold=0.05, border=0), dynamic=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 1, 256, 320]
    x = [(cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (320, 256)).astype(np.float32) / 255)[None, None] for f in freiburg_frames[:2]]
    outputs = dict(zip(OUTPUT_NAMES, session.run(None, {"image0": x[0], "image1": x[1]})))
    assert outputs["confidence"].shape == (1, 50)
    raw = RawMatches.from_outputs(outputs)
    assert 0 < len(raw.confidence) <= 50
    assert raw.confidence.min() > 0.05
    assert raw.keypoints0.max() <= 320 - 16


def test_no_dead_compute_in_graph(exported_model):
    """The coarse-only graph skips the FPN: no upsampling, and only the stem, ResNet and
    coarse output convolutions (1 + 4 + 5 + 5 + 5 + 1 = 21 for the student)."""
    proto = onnx.load(str(exported_model))
    ops = [node.op_type for node in proto.graph.node]
    assert "Resize" not in ops and "Upsample" not in ops
    assert ops.count("Conv") == 21


def test_expectation_refinement_is_the_confidence_weighted_mean():
    from coarse_loftr_train.export import CellCentres, ExpectationRefinement, MatchExtraction, log_normalisers

    grid, stride = (5, 4), 16
    torch.manual_seed(0)
    similarity = torch.randn(1, 20, 20) * 3
    similarity[0, 6, 12] = 20.0  # a clear match: cell 6 (row 1, col 1) <-> cell 12 (row 2, col 2)
    similarity[0, 6, 13] = 19.0  # its right neighbour in image 1
    similarity[0, 1, 12] = 18.0  # the upper neighbour in image 0
    confidence = torch.softmax(similarity, 1) * torch.softmax(similarity, 2)
    row_norm, column_norm = log_normalisers(similarity, similarity.transpose(1, 2))
    cells0, cells1 = torch.tensor([[6, 0]]), torch.tensor([[12, 4]])
    kp0, kp1 = ExpectationRefinement(stride)(similarity, row_norm, column_norm, cells0, cells1, grid, grid)

    def expected(values, centre):  # values: confidence against every cell of a 5x4 grid
        row, column = divmod(centre, 5)
        total, shift = 0.0, np.zeros(2)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if 0 <= row + dy < 4 and 0 <= column + dx < 5:
                    weight = float(values[(row + dy) * 5 + column + dx])
                    total += weight
                    shift += weight * np.array([dx, dy]) * stride
        return np.array([column, row]) * stride + shift / total

    for k, (c0, c1) in enumerate([(6, 12), (0, 4)]):  # (0, 4): corners, neighbours off the grid
        np.testing.assert_allclose(kp1[0, k].numpy(), expected(confidence[0, c0], c1), atol=1e-3)
        np.testing.assert_allclose(kp0[0, k].numpy(), expected(confidence[0, :, c1], c0), atol=1e-3)
    assert kp1[0, 0, 0] > 32 + 3 and kp0[0, 0, 1] < 16 - 2  # pulled towards the strong neighbours
    plain0, plain1 = CellCentres(stride)(similarity, row_norm, column_norm, cells0, cells1, grid, grid)
    assert plain0[0, 0].tolist() == [16, 16] and plain1[0, 0].tolist() == [32, 32]
    scores, m0, m1, _, _ = MatchExtraction(ExtractionConfig(top_k=3, border=0))(similarity, similarity.transpose(1, 2), grid, grid)
    found = dict(zip(m0[0].tolist(), zip(m1[0].tolist(), scores[0].tolist())))
    assert found[6][0] == 12 and abs(found[6][1] - confidence[0, 6, 12].item()) < 1e-5


def test_sequence_graphs_equal_pair_graph(exported_model, freiburg_frames):
    from coarse_loftr_train.export import sequence_graph_paths

    x0, x1 = _inputs(freiburg_frames, 6, 7)
    features_path, matching_path = sequence_graph_paths(exported_model)
    features = ort.InferenceSession(str(features_path), providers=["CPUExecutionProvider"])
    matching = ort.InferenceSession(str(matching_path), providers=["CPUExecutionProvider"])
    pair = ort.InferenceSession(str(exported_model), providers=["CPUExecutionProvider"])
    f0, f1 = (features.run(None, {"image": x})[0] for x in (x0, x1))
    staged = RawMatches.from_outputs(dict(zip(OUTPUT_NAMES, matching.run(None, {"features0": f0, "features1": f1}))))
    single = RawMatches.from_outputs(dict(zip(OUTPUT_NAMES, pair.run(None, {"image0": x0, "image1": x1}))))
    assert_same_matches(staged, single, keypoint_atol=1e-3)


@pytest.mark.parametrize("seed", range(6))
def test_match_extraction_equals_mutual_nearest_neighbours_of_the_dual_softmax(seed):
    """The in-graph extraction (log domain, row reductions only) finds exactly the mutual
    nearest neighbours of the full dual-softmax matrix, with their confidences."""
    from coarse_loftr_ros.backends.extraction import extract_matches
    from coarse_loftr_train.export import MatchExtraction

    grid = (8, 6)
    generator = torch.Generator().manual_seed(seed)
    similarity = torch.randn(1, 48, 48, generator=generator) * (1 + seed)
    if seed % 2:  # a few strong, one-to-one matches on top of the noise
        similarity[0, torch.arange(0, 48, 3), torch.randperm(48, generator=generator)[:16]] += 8.0
    confidence = (torch.softmax(similarity, 1) * torch.softmax(similarity, 2)).numpy()
    border = seed % 2
    threshold = 0.0 if seed < 3 else float(np.median(confidence.max(axis=1)))
    expected = extract_matches(confidence, grid, grid, 16, threshold, border)
    scores, cells0, cells1, _, _ = MatchExtraction(ExtractionConfig(top_k=48, threshold=threshold, border=border))(
        similarity, similarity.transpose(1, 2), grid, grid
    )
    valid = scores[0] > 0
    found = dict(zip(cells0[0][valid].tolist(), cells1[0][valid].tolist()))
    assert len(expected.cells0) > 0
    assert found == dict(zip(expected.cells0.tolist(), expected.cells1.tolist()))
    np.testing.assert_allclose(np.sort(scores[0][valid].numpy()), np.sort(expected.confidence), rtol=1e-4)


def test_row_argmax_finds_the_first_maximum_of_each_row():
    from coarse_loftr_train.export import row_argmax

    values = torch.randint(0, 5, (2, 30, 48)).float()  # many ties
    values[0, 3] = 7.0  # a whole row tied: the first column wins
    np.testing.assert_array_equal(row_argmax(values, 8).numpy(), np.argmax(values.numpy(), axis=2))
