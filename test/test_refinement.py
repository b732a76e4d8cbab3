"""The optional learned sub-pixel refinement: geometry of the window, export parity, loading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from coarse_loftr_train import STUDENT, CoarseLoFTR
from coarse_loftr_train.config import ModelConfig


def refined_config(width: int = 160, height: int = 128) -> ModelConfig:
    return dataclasses.replace(STUDENT.with_input_size(width, height), refine_window=5)


def test_offsets_recover_a_known_shift_of_the_fine_features():
    model = CoarseLoFTR(refined_config())
    torch.manual_seed(0)
    fine0 = torch.randn(1, 16, 32, 40) * 4  # fine grid of a 160x128 input at stride 4
    dx, dy = 1, -2  # fine cells
    fine1 = torch.roll(fine0, shifts=(dy, dx), dims=(2, 3))
    columns = 10
    cells = torch.tensor([[2 * columns + 3, 4 * columns + 5, 5 * columns + 6]])
    offsets = model.refinement(fine0, fine1, cells, cells)
    torch.testing.assert_close(offsets, torch.tensor([[[4.0 * dx, 4.0 * dy]] * 3]), atol=0.05, rtol=0)
    # Matching the cell one to the right moves the offset by one coarse cell (4 fine cells) less.
    offsets = model.refinement(fine0, torch.roll(fine0, shifts=(0, 5), dims=(2, 3)), cells, cells + 1)
    torch.testing.assert_close(offsets, torch.tensor([[[4.0, 0.0]] * 3]), atol=0.05, rtol=0)


def test_a_shifted_window_reaches_beyond_the_first_one():
    """Re-centring (``shift``): a displacement of 3 fine cells, outside the 5x5 window (+-2)
    around the cell, is found exactly once the window is centred 2 cells over."""
    model = CoarseLoFTR(refined_config())
    torch.manual_seed(5)
    fine0 = torch.randn(1, 16, 32, 40) * 4
    fine1 = torch.roll(fine0, shifts=(-1, 3), dims=(2, 3))  # content moves 3 right, 1 up
    cells = torch.tensor([[2 * 10 + 3, 4 * 10 + 4, 5 * 10 + 5]])
    shift = torch.tensor([[[2, 0]] * 3])
    offsets = model.refinement(fine0, fine1, cells, cells, shift)
    torch.testing.assert_close(offsets, torch.tensor([[[12.0, -4.0]] * 3]), atol=0.05, rtol=0)


def test_both_way_refinement_moves_both_keypoints_symmetrically():
    from coarse_loftr_train.export import LearnedRefinement

    model = CoarseLoFTR(refined_config()).eval()
    torch.manual_seed(4)
    fine0 = torch.randn(1, 16, 32, 40) * 4
    dx, dy = 1, -2  # fine cells
    fine1 = torch.roll(fine0, shifts=(dy, dx), dims=(2, 3))

    def features(fine: torch.Tensor) -> torch.Tensor:  # the layout of extract_features
        return torch.cat([torch.zeros(1, 32, 8, 10), fine.reshape(1, -1, 8, 10)], dim=1)

    cells = torch.tensor([[2 * 10 + 3, 4 * 10 + 4, 5 * 10 + 5]])
    points = torch.tensor([[[48.0, 32.0], [64.0, 64.0], [80.0, 80.0]]])  # the cells' pixels
    with torch.no_grad():
        kp0, kp1 = LearnedRefinement((10, 8), (10, 8), 16, model)(features(fine0), features(fine1), cells, cells)
    half = torch.tensor([2.0 * dx, 2.0 * dy])
    torch.testing.assert_close(kp0, points - half, atol=0.05, rtol=0)
    torch.testing.assert_close(kp1, points + half, atol=0.05, rtol=0)


def test_window_off_the_map_scores_zero_like_zero_padding():
    """Matches at the image border: window pixels outside the fine map score 0."""
    model = CoarseLoFTR(refined_config())
    torch.manual_seed(3)
    fine0, fine1 = torch.randn(2, 1, 16, 32, 40)
    columns, rows = 10, 8
    cells0 = torch.tensor([[0, 11, 35, 79, 70, 9]])
    cells1 = torch.tensor([[0, columns - 1, (rows - 1) * columns, rows * columns - 1, 44, 5]])
    offsets = model.refinement(fine0, fine1, cells0, cells1)
    padded = torch.nn.functional.pad(fine1, (2, 2, 2, 2))
    for k, (c0, c1) in enumerate(zip(cells0[0].tolist(), cells1[0].tolist())):
        f0 = fine0[0, :, c0 // columns * 4, c0 % columns * 4]
        y, x = c1 // columns * 4 + 2, c1 % columns * 4 + 2  # centre in the padded map
        window = padded[0, :, y - 2 : y + 3, x - 2 : x + 3]  # [C, 5, 5]
        weights = torch.softmax((f0[:, None, None] * window).sum(0).reshape(-1) / 4.0, 0).reshape(5, 5)
        steps = torch.arange(-2, 3, dtype=torch.float32)
        expected = torch.stack([(weights * steps[None, :]).sum(), (weights * steps[:, None]).sum()]) * 4
        torch.testing.assert_close(offsets[0, k], expected, atol=1e-5, rtol=0)


def test_feature_map_carries_the_fine_features_losslessly():
    model = CoarseLoFTR(refined_config()).eval()
    image = torch.rand(1, 1, 128, 160)
    with torch.no_grad():
        packed = model.extract_features(image)
        coarse, stage = model.backbone.forward_with_stage(image)
        fine = model.refinement.features(stage)
    assert packed.shape == (1, 32 + 16 * 16, 8, 10)
    torch.testing.assert_close(packed[:, :32], coarse)
    torch.testing.assert_close(packed[:, 32:].reshape(fine.shape), fine)


def test_configs_without_refinement_keep_the_released_layout():
    assert STUDENT.refine_window == 0 and CoarseLoFTR(STUDENT).refinement is None
    with pytest.raises(ValueError, match="odd"):
        dataclasses.replace(STUDENT, refine_window=4)
    keys = set(CoarseLoFTR(refined_config()).state_dict()) - set(CoarseLoFTR(STUDENT).state_dict())
    assert keys == {"refinement.proj.weight", "refinement.proj.bias"}


def test_exported_refinement_matches_torch():
    ort = pytest.importorskip("onnxruntime")
    from coarse_loftr_train.export import ExportableMatcher, ExtractionConfig, export_onnx

    torch.manual_seed(1)
    model = CoarseLoFTR(refined_config()).eval()
    images = torch.rand(2, 1, 1, 128, 160)
    with torch.no_grad():
        expected = ExportableMatcher(model, ExtractionConfig(top_k=32)).eval()(images[0], images[1])
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, Path(folder) / "refined.onnx", ExtractionConfig(top_k=32))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {"image0": images[0].numpy(), "image1": images[1].numpy()})
    valid = expected[3][0].numpy()
    assert valid.sum() > 0
    # The refined keypoints are off the cell grid, and equal in both runtimes.
    assert np.abs(np.asarray(expected[1][0][valid]) % 16).max() > 0.01
    np.testing.assert_allclose(outputs[1][0][valid], expected[1][0].numpy()[valid], atol=1e-3)
    np.testing.assert_array_equal(outputs[5][0][valid], expected[5][0].numpy()[valid])


def test_sequence_mode_graphs_carry_the_learned_refinement(tmp_path):
    pytest.importorskip("onnxruntime")
    import skimage.data

    from coarse_loftr_ros import Matcher
    from coarse_loftr_train.export import export_onnx

    torch.manual_seed(2)
    path = export_onnx(CoarseLoFTR(refined_config()), tmp_path / "refined.onnx")
    matcher = Matcher(model=path)
    image0 = skimage.data.camera()[:256, :320]
    image1 = skimage.data.camera()[8:264, 6:326]
    pair = matcher.match(image0, image1)
    assert matcher.match_next(image0) is None
    sequence = matcher.match_next(image1)
    assert len(pair) > 0 and len(sequence) == len(pair)
    np.testing.assert_allclose(sequence.keypoints1, pair.keypoints1, atol=1e-3)
