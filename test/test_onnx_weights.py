"""A checkpoint recovered from an exported ONNX graph is the exported model again."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from coarse_loftr_ros.errors import ModelError  # noqa: E402
from coarse_loftr_train import STUDENT, CoarseLoFTR  # noqa: E402
from coarse_loftr_train.checkpoint import load_model  # noqa: E402
from coarse_loftr_train.export import export_onnx  # noqa: E402
from coarse_loftr_train.onnx_weights import checkpoint_from_onnx, main, model_from_onnx  # noqa: E402


def trained_like_model() -> CoarseLoFTR:
    """The shipped model's layout at 160x128 with non-trivial weights and BatchNorm statistics."""
    config = dataclasses.replace(STUDENT.with_input_size(160, 128), refine_window=5, stage_blocks=(0, 2, 1, 2), layer_names=("self", "cross"))
    torch.manual_seed(3)
    model = CoarseLoFTR(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.normal_()
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = trained_like_model()
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "m.onnx", sequence_graphs=False)


def coarse_features(model: CoarseLoFTR, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.extract_features(images)


def test_recovered_model_computes_what_was_exported(exported):
    import skimage.data

    original, path = exported
    images = torch.from_numpy(np.stack([skimage.data.camera()[:128, :160], skimage.data.camera()[200:328, 100:260]]))
    images = images[:, None].float() / 255.0
    recovered = model_from_onnx(path)
    assert recovered.config == original.config
    expected = coarse_features(original, images)
    np.testing.assert_allclose(coarse_features(recovered, images).numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    # The transformer and refinement weights come back as they were.
    for key, value in original.state_dict().items():
        if key.startswith(("loftr_coarse.", "refinement.")):
            np.testing.assert_array_equal(recovered.state_dict()[key].numpy(), value.numpy(), err_msg=key)


def test_calibrated_batchnorm_keeps_eval_and_follows_training_mode(exported):
    import skimage.data

    original, path = exported
    photos = [skimage.data.camera(), skimage.data.coins(), skimage.data.moon(), skimage.data.text()]
    recovered = model_from_onnx(path, calibration=photos)
    images = torch.stack([torch.from_numpy(np.ascontiguousarray(p[:128, :160])).float()[None] / 255.0 for p in photos])
    eval_features = coarse_features(recovered, images)
    np.testing.assert_allclose(eval_features.numpy(), coarse_features(original, images).numpy(), rtol=1e-4, atol=1e-4)
    identity = model_from_onnx(path)
    identity.train(), recovered.train()
    # Under batch statistics the calibrated BatchNorms stay near the exported function;
    # the identity ones (unit scale on normalised inputs) do not.
    error = lambda m: float((coarse_features(m, images) - eval_features).norm() / eval_features.norm())  # noqa: E731
    assert error(recovered) < 0.5 * error(identity)


def test_checkpoint_file_loads_and_the_command_refuses_foreign_graphs(exported, tmp_path, released_onnx):
    _, path = exported
    checkpoint = checkpoint_from_onnx(path, tmp_path / "m.pt")
    assert load_model(checkpoint).config.layer_names == ("self", "cross")
    with pytest.raises(ModelError, match="no coarse_loftr config metadata"):
        model_from_onnx(released_onnx)
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "missing.onnx"), str(tmp_path / "x.pt")])
    assert exit_.value.code == 2
