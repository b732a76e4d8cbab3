"""Load coarse LoFTR weights from the checkpoint layouts in use.

Accepted layouts (a ``torch.save`` dict):

* this project's checkpoints: ``model_state_dict`` plus ``config`` (a ``ModelConfig`` dict)
  and, for a shipped model, ``match_score_scale`` (``stored_match_score_scale``);
* the released reduced model (Coarse_LoFTR_TRT): ``model_state_dict`` only;
* the original LoFTR PyTorch-Lightning checkpoint: ``state_dict`` with keys under
  ``matcher.``; its fine-level weights are ignored (one log line).

Anything else fails with one line naming the missing and unexpected keys.

Security: a checkpoint is a pickle, and unpickling can run any code the file names. Files
are read with ``torch.load(weights_only=True)``: only tensors, numbers, strings and plain
containers (dict, OrderedDict, list, tuple) are rebuilt, which is all that the layouts
above hold (optimizer, scaler and scheduler states included). Anything else is refused
with one line (``CheckpointSecurityError``). For a legacy file you trust, opt in
explicitly: ``read_checkpoint(path, trusted=True)`` / ``load_model(path, trusted=True)``,
or ``COARSE_LOFTR_TRUSTED_CHECKPOINT=/path/to/that/file`` (exactly that one file) for the
CLI, the node and ``Matcher(model=...)``.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from coarse_loftr_ros.errors import CheckpointSecurityError, ModelError

from .config import ModelConfig, get_config
from .model import CoarseLoFTR

log = logging.getLogger(__name__)

# Fine-level parts of the full LoFTR, absent from the coarse model.
_FINE_PREFIXES = ("fine_preprocess.", "loftr_fine.", "fine_matching.")

TRUSTED_CHECKPOINT_ENV = "COARSE_LOFTR_TRUSTED_CHECKPOINT"
"""Environment variable naming ONE checkpoint file that may be unpickled without restriction."""


def _trusted_by_environment(path: Path) -> bool:
    named = os.environ.get(TRUSTED_CHECKPOINT_ENV)
    return bool(named) and Path(named).expanduser().resolve() == path.resolve()


def _refused_global(error: Exception) -> str | None:
    """The Python object a weights-only load refused (``builtins.exec``), from torch's message, or None."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    return found.group(1) if found else None


def read_checkpoint(path: str | Path, map_location: Any = "cpu", trusted: bool = False) -> dict:
    """The dict of a ``torch.save`` checkpoint, unpickled safely (tensors and plain containers only).

    Args:
        path: the checkpoint file.
        map_location: where tensors are placed (``torch.load``'s argument).
        trusted: unpickle without restriction (a legacy file you trust; it can run code).

    Raises ModelError (missing, corrupt, not a dict) or CheckpointSecurityError (objects a
    weights-only load refuses); each is one line.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist; pass the path of a .pt/.ckpt file")
    trusted = trusted or _trusted_by_environment(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as error:
        refused = None if trusted else _refused_global(error)
        if refused is None:  # garbage or a truncated file, not a refused object
            raise ModelError(f"cannot read checkpoint {path} (not a torch.save file or truncated); is it a complete .pt/.ckpt file?") from None
        raise CheckpointSecurityError(
            f"refusing checkpoint {path}: it holds the Python object {refused}, not only tensors and plain containers, "
            f"and unpickling it could run code; only if you trust this file, set {TRUSTED_CHECKPOINT_ENV}={path} "
            "(or pass trusted=True) and re-save its state dicts"
        ) from None
    except Exception as error:  # zip and EOF errors of torch.load
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelError(f"cannot read checkpoint {path} ({first_line}); is it a complete torch.save file?") from None
    if trusted:
        log.warning("loaded %s without the weights-only restriction (trusted by the caller)", path)
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


def load_model(path: str | Path, config: ModelConfig | str | None = None, trusted: bool = False) -> CoarseLoFTR:
    """Build a ``CoarseLoFTR`` in eval mode from a checkpoint file.

    Args:
        path: checkpoint file.
        config: the configuration, or its name; by default the one stored in the
            checkpoint, else ``student``.
        trusted: unpickle without the weights-only restriction (see the module docstring).
    """
    path = Path(path)
    data = read_checkpoint(path, trusted=trusted)
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


def stored_match_score_scale(path: str | Path) -> float | None:
    """The checkpoint's ``match_score_scale`` (its pair scores over the shipped model's, as
    ``coarse-loftr export --score-frames`` measures them), or None when it holds none: a
    training run's checkpoints do not, a retrained model is measured again."""
    value = read_checkpoint(Path(path)).get("match_score_scale")
    return None if value is None else float(value)
