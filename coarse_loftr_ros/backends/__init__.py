"""Backends run one matcher model; ``create_backend`` picks one for a model file."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import CoarseLoftrError, ModelError
from .base import Backend, RawMatches

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.onnx"
_SUFFIXES = {".onnx": "onnxruntime", ".pt": "torch", ".pth": "torch", ".ckpt": "torch", ".engine": "tensorrt", ".plan": "tensorrt"}


def default_model_path() -> Path:
    """The model shipped inside the package; a one-line error if this install has none."""
    if not DEFAULT_MODEL.is_file():
        raise ModelError(
            "this install ships no default model yet; pass model=PATH (--model PATH): an .onnx file from "
            "`coarse-loftr export`, a .pt/.ckpt checkpoint, or a TensorRT .engine"
        )
    return DEFAULT_MODEL


def create_backend(model: str | Path | None = None, backend: str = "auto", **options) -> Backend:
    """Open ``model`` (default: the shipped model) with ``backend``.

    ``auto`` chooses by file type: ``.pt/.ckpt`` -> torch, ``.engine`` -> tensorrt,
    ``.onnx`` -> tensorrt when TensorRT and a GPU are present (the engine is built on
    first use and cached), else onnxruntime; the choice is logged.
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    path = default_model_path() if model is None else Path(model)
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ModelError(f"model file {path} has an unknown type; pass an .onnx, .pt/.ckpt or .engine file")
    if backend == "auto" and kind == "onnxruntime":
        return _auto_onnx_backend(path, options)
    if backend == "auto":
        backend = kind
        log.info("backend auto: using %s for %s", backend, path.name)
    elif backend != kind and not (backend == "tensorrt" and kind == "onnxruntime"):
        raise ModelError(f"the {backend} backend cannot run {path.name}; pass a {', '.join(s for s, k in _SUFFIXES.items() if k == backend)} file")
    if backend == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, **options)
    if backend == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(path, **options)
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, **options)


def _auto_onnx_backend(path: Path, options: dict) -> Backend:
    """An ONNX model under ``auto``: TensorRT when it and a GPU are present, else ONNX Runtime."""
    from .onnxruntime_backend import OnnxRuntimeBackend
    from .tensorrt_backend import TensorRTBackend, tensorrt_available

    available, reason = tensorrt_available()
    if available:
        log.info("backend auto: using tensorrt for %s (%s)", path.name, reason)
        try:
            # ONNX Runtime's options (threads) mean nothing to TensorRT.
            return TensorRTBackend(path, **{k: v for k, v in options.items() if k != "threads"})
        except CoarseLoftrError as error:
            log.warning("backend auto: tensorrt failed (%s); using onnxruntime for %s", error, path.name)
    else:
        log.info("backend auto: using onnxruntime for %s (no tensorrt: %s)", path.name, reason)
    return OnnxRuntimeBackend(path, **options)


__all__ = ["BACKENDS", "Backend", "RawMatches", "create_backend", "default_model_path"]
