"""Load coarse LoFTR weights from the checkpoint layouts in use.

Accepted layouts (a ``torch.save`` dict):

* this project's checkpoints: ``model_state_dict`` plus ``config`` (a ``ModelConfig`` dict);
* the released reduced model (Coarse_LoFTR_TRT): ``model_state_dict`` only;
* the original LoFTR PyTorch-Lightning checkpoint: ``state_dict`` with keys under
  ``matcher.``; its fine-level weights are ignored (one log line).

Anything else fails with one line naming the missing and unexpected keys.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from coarse_loftr_ros.errors import ModelError

from .config import ModelConfig, get_config
from .model import CoarseLoFTR

log = logging.getLogger(__name__)

# Fine-level parts of the full LoFTR, absent from the coarse model.
_FINE_PREFIXES = ("fine_preprocess.", "loftr_fine.", "fine_matching.")


def _read(path: Path) -> dict:
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist; pass the path of a .pt/.ckpt file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # pickle, zip and EOF errors of torch.load
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelError(f"cannot read checkpoint {path} ({first_line}); is it a complete torch.save file?") from None
    if not isinstance(data, dict):
        raise ModelError(f"checkpoint {path} holds a {type(data).__name__}, expected a dict with 'model_state_dict' or 'state_dict'")
    return data


def _coarse_state_dict(data: dict, path: Path) -> dict[str, torch.Tensor]:
    if "model_state_dict" in data:
        return dict(data["model_state_dict"])
    if "state_dict" in data:
        state = {k.removeprefix("matcher."): v for k, v in data["state_dict"].items()}
        fine = [k for k in state if k.startswith(_FINE_PREFIXES)]
        if fine:
            log.info("ignoring %d fine-level tensors of %s (the coarse model has no fine level)", len(fine), path.name)
        return {k: v for k, v in state.items() if not k.startswith(_FINE_PREFIXES)}
    raise ModelError(f"checkpoint {path} has neither 'model_state_dict' nor 'state_dict' (keys: {sorted(data)[:8]})")


def load_model(path: str | Path, config: ModelConfig | str | None = None) -> CoarseLoFTR:
    """Build a ``CoarseLoFTR`` in eval mode from a checkpoint file.

    Args:
        path: checkpoint file.
        config: the configuration, or its name; by default the one stored in the
            checkpoint, else ``student``.
    """
    path = Path(path)
    data = _read(path)
    if isinstance(config, str):
        config = get_config(config)
    if config is None:
        stored = data.get("config")
        config = ModelConfig.from_dict(stored) if stored else get_config("student")
    model = CoarseLoFTR(config)
    state = _coarse_state_dict(data, path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mismatched:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "") if keys else "none"

        raise ModelError(
            f"checkpoint {path} does not fit the {config.name!r} config: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}; shape mismatches: {show(mismatched)} "
            f"(pass --config student|teacher matching the checkpoint)"
        )
    model.load_state_dict(state)
    return model.eval()
