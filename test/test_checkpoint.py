"""Checkpoint layouts that load, and one-line errors for those that do not."""

import pytest

torch = pytest.importorskip("torch")

from coarse_loftr_ros.errors import ModelError  # noqa: E402
from coarse_loftr_train import STUDENT, CoarseLoFTR  # noqa: E402
from coarse_loftr_train.checkpoint import load_model  # noqa: E402


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_released_layout_loads(released_checkpoint):
    model = load_model(released_checkpoint)
    assert model.config == STUDENT
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 158_840


def test_lightning_layout_loads_and_ignores_fine_level(tmp_path, released_checkpoint, caplog):
    state = torch.load(released_checkpoint, map_location="cpu", weights_only=True)["model_state_dict"]
    lightning = {f"matcher.{k}": v for k, v in state.items()}
    lightning["matcher.fine_preprocess.down_proj.weight"] = torch.zeros(4, 4)
    lightning["matcher.loftr_fine.layers.0.q_proj.weight"] = torch.zeros(4, 4)
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": lightning, "epoch": 1}, path)
    with caplog.at_level("INFO"):
        model = load_model(path, "student")
    assert _same_weights(model, load_model(released_checkpoint))
    assert any("ignoring 2 fine-level tensors" in r.message for r in caplog.records)


def test_own_layout_restores_config(tmp_path):
    config = STUDENT.with_input_size(320, 240)
    model = CoarseLoFTR(config)
    path = tmp_path / "own.pt"
    torch.save({"model_state_dict": model.state_dict(), "config": config.to_dict()}, path)
    loaded = load_model(path)
    assert loaded.config == config
    assert _same_weights(model, loaded)


def test_wrong_config_names_missing_and_unexpected_keys(released_checkpoint):
    with pytest.raises(ModelError) as error:
        load_model(released_checkpoint, "teacher")
    message = str(error.value)
    assert "\n" not in message
    assert "missing keys" in message and "unexpected keys" in message and "shape mismatches" in message


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "cannot read checkpoint"),
        (b"not a checkpoint at all", "cannot read checkpoint"),
    ],
)
def test_corrupt_file_is_one_line_error(tmp_path, content, expected):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=expected) as error:
        load_model(path)
    assert "\n" not in str(error.value)


def test_unknown_layout_and_missing_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": {}}, path)
    with pytest.raises(ModelError, match="neither 'model_state_dict' nor 'state_dict'"):
        load_model(path)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
