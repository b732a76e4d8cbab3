"""Model configuration as data: stage depths of the fast student, and exact rewrites."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from coarse_loftr_train import STUDENT, TEACHER, CoarseLoFTR
from coarse_loftr_train.config import ModelConfig
from coarse_loftr_train.model import elu_plus_one


def test_shipped_configs_have_two_blocks_per_stage_as_in_loftr():
    assert STUDENT.stage_blocks == (2, 2, 2, 2)
    assert TEACHER.stage_blocks == (2, 2, 2)
    assert ModelConfig.from_dict(STUDENT.to_dict()) == STUDENT


def test_a_stored_config_without_stage_blocks_still_loads():
    stored = STUDENT.to_dict()
    del stored["stage_blocks"]  # written before the field existed
    assert ModelConfig.from_dict(stored) == STUDENT


@pytest.mark.parametrize(
    "blocks, message",
    [((2, 2, 2), "one entry per block dim"), ((2, 0, 2, 2), "only the first stage"), ((-1, 2, 2, 2), "only the first stage")],
)
def test_bad_stage_blocks_are_rejected(blocks, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(STUDENT, stage_blocks=blocks)


def test_an_empty_first_stage_needs_matching_channels():
    with pytest.raises(ValueError, match="initial_dim == block_dims"):
        dataclasses.replace(STUDENT, initial_dim=4, stage_blocks=(0, 2, 2, 2))


def test_the_fast_student_skips_the_half_resolution_stage():
    onnx = pytest.importorskip("onnx")
    from coarse_loftr_train.export import FeatureExtractor

    fast = CoarseLoFTR(dataclasses.replace(STUDENT.with_input_size(160, 128), stage_blocks=(0, 2, 2, 2))).eval()
    image = torch.rand(1, 1, 128, 160)
    with torch.no_grad():
        features = fast.extract_features(image)
    assert features.shape == (1, 32, 8, 10)
    import io

    buffer = io.BytesIO()
    torch.onnx.export(FeatureExtractor(fast), (image,), buffer, opset_version=17, dynamo=False)
    ops = [node.op_type for node in onnx.load_from_string(buffer.getvalue()).graph.node]
    assert ops.count("Conv") == 21 - 4  # the student's 21 minus the 2 blocks x 2 convolutions of stage 1


def test_elu_plus_one_is_the_same_function():
    x = torch.cat([torch.linspace(-90, 90, 2001), torch.tensor([0.0, -1e-8, 1e-8, -200.0])])
    torch.testing.assert_close(elu_plus_one(x), F.elu(x) + 1, rtol=1e-6, atol=1e-7)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(elu_plus_one(x).sum(), x)
    (expected,) = torch.autograd.grad((F.elu(x) + 1).sum(), x)
    torch.testing.assert_close(grad, expected)
