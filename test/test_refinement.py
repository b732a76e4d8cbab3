"""The optional learned sub-pixel refinement: geometry of the window, export parity, loading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from matching import assert_same_matches

from coarse_loftr_train import STUDENT, CoarseLoFTR
from coarse_loftr_train.config import ModelConfig


def refined_config(width: int = 160, height: int = 128) -> ModelConfig:
    return dataclasses.replace(STUDENT.with_input_size(width, height), refine_window=5)


def test_offsets_recover_a_known_shift_of_the_fine_features():
    model = CoarseLoFTR(refined_config())
    torch.manual_seed(0)
    fine0 = torch.randn(1, 32, 40, 16) * 4  # channels-last fine grid of a 160x128 input at stride 4
    dx, dy = 1, -2  # fine cells
    fine1 = torch.roll(fine0, shifts=(dy, dx), dims=(1, 2))
    columns = 10
    cells = torch.tensor([[2 * columns + 3, 4 * columns + 5, 5 * columns + 6]])
    offsets = model.refinement(fine0, fine1, cells, cells)
    torch.testing.assert_close(offsets, torch.tensor([[[4.0 * dx, 4.0 * dy]] * 3]), atol=0.05, rtol=0)
    # Matching the cell one to the right moves the offset by one coarse cell (4 fine cells) less.
    offsets = model.refinement(fine0, torch.roll(fine0, shifts=(0, 5), dims=(1, 2)), cells, cells + 1)
    torch.testing.assert_close(offsets, torch.tensor([[[4.0, 0.0]] * 3]), atol=0.05, rtol=0)


def test_a_shifted_window_reaches_beyond_the_first_one():
    """Re-centring (``shift``): a displacement of 3 fine cells, outside the 5x5 window (+-2)
    around the cell, is found exactly once a 3x3 window is centred 2 cells over."""
    refinement = CoarseLoFTR(refined_config()).refinement
    torch.manual_seed(5)
    fine0 = torch.randn(1, 32, 40, 16) * 4
    fine1 = torch.roll(fine0, shifts=(-1, 3), dims=(1, 2))  # content moves 3 right, 1 up
    cells = torch.tensor([[2 * 10 + 3, 4 * 10 + 4, 5 * 10 + 5]])
    scores = refinement.correlate(fine0, fine1, cells, cells, radius=3)
    assert scores.shape == (1, 3, 49)
    shifted = refinement.soft_argmax(scores, 3, torch.tensor([[[2, 0]] * 3]))
    torch.testing.assert_close(shifted, torch.tensor([[[3.0, -1.0]] * 3]), atol=0.02, rtol=0)


def test_both_way_refinement_moves_both_keypoints_symmetrically():
    from coarse_loftr_train.export import LearnedRefinement

    model = CoarseLoFTR(refined_config()).eval()
    torch.manual_seed(4)
    fine0 = torch.randn(1, 32, 40, 16) * 4
    dx, dy = 1, -2  # fine cells
    fine1 = torch.roll(fine0, shifts=(dy, dx), dims=(1, 2))

    def features(fine: torch.Tensor) -> torch.Tensor:  # the layout of extract_features
        return torch.cat([torch.zeros(1, 32, 8, 10), fine.reshape(1, -1, 8, 10)], dim=1)

    cells = torch.tensor([[2 * 10 + 3, 4 * 10 + 4, 5 * 10 + 5]])
    points = torch.tensor([[[48.0, 32.0], [64.0, 64.0], [80.0, 80.0]]])  # the cells' pixels
    with torch.no_grad():
        kp0, kp1 = LearnedRefinement(16, model)(features(fine0), features(fine1), cells, cells)
    half = torch.tensor([2.0 * dx, 2.0 * dy])
    torch.testing.assert_close(kp0, points - half, atol=0.05, rtol=0)
    torch.testing.assert_close(kp1, points + half, atol=0.05, rtol=0)


def zero_padded_soft_argmax(fine0, fine1, cell0, cell1, window, shift=(0, 0), columns=10):
    """Reference: the soft-argmax (fine cells) over a window cut from a zero-padded channels-last map."""
    pad = 4
    padded = torch.nn.functional.pad(fine1, (0, 0, pad, pad, pad, pad))
    f0 = fine0[cell0 // columns * 4, cell0 % columns * 4]
    y = cell1 // columns * 4 + pad + shift[1]  # window centre in the padded map
    x = cell1 % columns * 4 + pad + shift[0]
    half = window // 2
    patch = padded[y - half : y + half + 1, x - half : x + half + 1]  # [w, w, C]
    weights = torch.softmax((patch * f0).sum(-1).reshape(-1) / 4.0, 0).reshape(window, window)
    steps = torch.arange(-half, half + 1, dtype=torch.float32)
    return torch.stack([(weights * steps[None, :]).sum() + shift[0], (weights * steps[:, None]).sum() + shift[1]])


def test_window_off_the_map_scores_zero_like_zero_padding():
    """Matches at the image border: window pixels outside the fine map score 0, in the
    first window and in a re-centred one."""
    refinement = CoarseLoFTR(refined_config()).refinement
    torch.manual_seed(3)
    fine0, fine1 = torch.randn(2, 1, 32, 40, 16)
    columns, rows = 10, 8
    cells0 = torch.tensor([[0, 11, 35, 79, 70, 9]])
    cells1 = torch.tensor([[0, columns - 1, (rows - 1) * columns, rows * columns - 1, 44, 5]])
    offsets = refinement(fine0, fine1, cells0, cells1)
    shift = torch.tensor([[[-2, -1], [2, 0], [-1, 2], [2, 2], [0, -2], [1, -2]]])
    scores = refinement.correlate(fine0, fine1, cells0, cells1, radius=3)
    shifted = refinement.soft_argmax(scores, 3, shift)
    for k, (c0, c1) in enumerate(zip(cells0[0].tolist(), cells1[0].tolist())):
        expected = zero_padded_soft_argmax(fine0[0], fine1[0], c0, c1, 5) * 4  # pixels
        torch.testing.assert_close(offsets[0, k], expected, atol=1e-5, rtol=0)
        expected = zero_padded_soft_argmax(fine0[0], fine1[0], c0, c1, 3, tuple(shift[0, k].tolist()))
        torch.testing.assert_close(shifted[0, k], expected, atol=1e-5, rtol=0)


def test_feature_map_carries_the_fine_features_losslessly():
    model = CoarseLoFTR(refined_config()).eval()
    image = torch.rand(1, 1, 128, 160)
    with torch.no_grad():
        packed = model.extract_features(image)
        coarse, stage = model.backbone.forward_with_stage(image)
        fine = model.refinement.features(stage)
    assert packed.shape == (1, 32 + 16 * 16, 8, 10)
    assert fine.shape == (1, 32, 40, 16)  # channels-last
    torch.testing.assert_close(packed[:, :32], coarse)
    torch.testing.assert_close(packed[:, 32:].reshape(fine.shape), fine)
    torch.testing.assert_close(model.fine_features(packed), fine)


def test_per_frame_encoding_gives_the_same_transformed_features():
    """``extract_features(encode=True)`` runs the position encoding and the leading self
    layer per image; the rest of the transformer on such maps equals the whole one."""
    model = CoarseLoFTR(refined_config()).eval()
    assert model.loftr_coarse.per_image_layers == 1  # self, cross, self, cross
    images = torch.rand(2, 1, 128, 160)
    with torch.no_grad():
        plain = model.extract_features(images)
        encoded = model.extract_features(images, encode=True)
        expected = model.transform(plain[:1], plain[1:])
        found = model.transform(encoded[:1], encoded[1:], encoded=True)
    assert encoded.shape == plain.shape
    torch.testing.assert_close(encoded[:, 32:], plain[:, 32:])  # fine features untouched
    for a, b in zip(found, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


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
    # The refined keypoints are off the cell grid, and equal in both runtimes, match by match
    # (keyed by the matched cells: near-tie confidences may come in another order).
    assert np.abs(np.asarray(expected[1][0][valid]) % 16).max() > 0.01
    ours = {(int(c0), int(c1)): k for c0, c1, k in zip(outputs[4][0][valid], outputs[5][0][valid], outputs[1][0][valid])}
    theirs = {(int(c0), int(c1)): k.numpy() for c0, c1, k in zip(expected[4][0][valid], expected[5][0][valid], expected[1][0][valid])}
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-3)


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
    assert len(pair) > 0
    assert_same_matches(sequence, pair, keypoint_atol=1e-3)
