"""Recover a trainable ``CoarseLoFTR`` from an ONNX file exported by ``export_onnx``.

A user (or the project) who has only the exported pair-mode graph ``model.onnx`` gets back a
checkpoint to fine-tune: ``checkpoint_from_onnx(onnx, output)``, or the command
``python -m coarse_loftr_train.onnx_weights MODEL.onnx OUTPUT.pt``.

How: the graph stores its model config as metadata. A model of that config with known
random weights is exported the same way; its graph has the same nodes in the same order,
so the n-th Conv / MatMul weight of the given graph belongs to the module whose weight sits
at the n-th place of the known graph (identified by value). Export folds each BatchNorm into
the convolution before it (weight ``W * g / s``, bias ``b - m * g / s``); the recovered
model keeps the folded convolution and a BatchNorm that adds the folded bias. Without
calibration that BatchNorm is the identity plus a bias in eval mode only; with
``calibration`` images it is set to the batch statistics of its input on them, so that a
training-mode forward pass (batch statistics) computes nearly the same function too and
fine-tuning starts from the exported model rather than from a disturbed one. In eval mode
the recovered model equals the graph either way (up to float rounding).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from coarse_loftr_ros.backends.base import METADATA_PREFIX
from coarse_loftr_ros.errors import ModelError

from .config import ModelConfig
from .export import ExtractionConfig, export_onnx
from .model import CoarseLoFTR


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelError("reading ONNX weights needs the onnx package: pip install onnx") from None
    return onnx, numpy_helper


Weighted = tuple[str, list[np.ndarray | None]]  # (op type, the node's initializer inputs, None elsewhere)


def _weighted_nodes(path: Path) -> tuple[dict[str, str], list[Weighted]]:
    """(metadata, [(op type, initializer inputs)] of Conv, MatMul and LayerNormalization nodes in graph order)."""
    onnx, numpy_helper = _onnx()
    proto = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:  # equal initializers are shared through Identity nodes
        if node.op_type == "Identity" and node.input[0] in init:
            init[node.output[0]] = init[node.input[0]]
    metadata = {p.key.removeprefix(METADATA_PREFIX): p.value for p in proto.metadata_props}
    nodes = []
    for node in proto.graph.node:
        if node.op_type in ("Conv", "MatMul", "LayerNormalization") and any(name in init for name in node.input):
            nodes.append((node.op_type, [init.get(name) for name in node.input]))
    return metadata, nodes


def _identify(known: np.ndarray, candidates: dict[str, np.ndarray]) -> str:
    """The state-dict key whose tensor is proportional to ``known`` (same shape, best correlation)."""
    best, score = None, -1.0
    for key, value in candidates.items():
        if value.shape != known.shape:
            continue
        a, b = known.ravel(), value.ravel()
        c = abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)
        if c > score:
            best, score = key, c
    if best is None or score < 0.999:
        raise ModelError(f"cannot map an ONNX weight of shape {known.shape} to the model (best correlation {score:.3f})")
    return best


def model_from_onnx(path: str | Path, calibration: Sequence[np.ndarray] = ()) -> CoarseLoFTR:
    """The ``CoarseLoFTR`` of an ``export_onnx`` graph, in eval mode.

    Args:
        path: the pair-mode ``.onnx`` file (its sequence-mode siblings are not needed).
        calibration: grayscale uint8 images (any size; resized to the model input) for the
            BatchNorm statistics; empty keeps identity BatchNorms (exact in eval mode only).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX model {path} does not exist; pass the path of an exported .onnx file")
    metadata, nodes = _weighted_nodes(path)
    if "config" not in metadata:
        raise ModelError(f"{path} has no coarse_loftr config metadata; only graphs written by coarse-loftr export can be recovered")
    config = ModelConfig.from_dict(json.loads(metadata["config"]))
    extraction = ExtractionConfig(int(metadata.get("top_k", 1024)), float(metadata.get("threshold", 0.0)), int(metadata.get("border", 0)))

    torch.manual_seed(0)
    fresh = {k: v.numpy().copy() for k, v in CoarseLoFTR(config).state_dict().items()}  # for parts no graph uses
    reference = CoarseLoFTR(config).eval()
    with torch.no_grad():  # distinct, known values everywhere
        for parameter in reference.parameters():
            parameter.copy_(torch.randn_like(parameter))
        for module in reference.modules():  # unit BatchNorm scales: folding then scales a weight as a whole
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
    state = {k: v.detach().numpy().copy() for k, v in reference.state_dict().items()}
    with tempfile.TemporaryDirectory() as folder:
        known = Path(folder) / "known.onnx"
        export_onnx(reference, known, extraction, refinement=metadata.get("refinement", "auto"), sequence_graphs=False)
        _, known_nodes = _weighted_nodes(known)
    shapes = lambda ns: [(op, [None if a is None else a.shape for a in arrays]) for op, arrays in ns]  # noqa: E731
    if shapes(known_nodes) != shapes(nodes):
        raise ModelError(f"{path} was exported by another version of the graph than this code writes; re-export it from its checkpoint")

    def of_shape(ndim: int) -> dict[str, np.ndarray]:
        return {k: v for k, v in state.items() if v.ndim == ndim and not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}

    # A folded BatchNorm leaves its (random, distinct) bias as the known convolution's bias.
    batchnorm_biases = {
        f"{name}.bias": state[f"{name}.bias"] for name, module in reference.named_modules() if isinstance(module, nn.BatchNorm2d)
    }
    recovered: dict[str, np.ndarray] = {}
    for (op, arrays), (_, known_arrays) in zip(nodes, known_nodes):
        if op == "Conv":
            key = _identify(known_arrays[1], of_shape(4))
            recovered[key] = arrays[1]
            module = key.removesuffix(".weight")
            bias = arrays[2] if len(arrays) > 2 else None
            if bias is None:
                continue
            if f"{module}.bias" in state:
                recovered[f"{module}.bias"] = bias
                continue
            bn = _identify(known_arrays[2], batchnorm_biases).removesuffix(".bias")
            recovered[f"{bn}.weight"] = np.ones(bias.shape[0], np.float32)
            recovered[f"{bn}.bias"] = bias
            recovered[f"{bn}.running_mean"] = np.zeros(bias.shape[0], np.float32)
            recovered[f"{bn}.running_var"] = np.full(bias.shape[0], 1.0 - reference.get_submodule(bn).eps, np.float32)
        elif op == "MatMul":
            for weight, known_weight in zip(arrays, known_arrays):
                if weight is not None:  # nn.Linear stores W, the graph x @ W.T
                    recovered[_identify(known_weight.T, of_shape(2))] = weight.T
        else:  # LayerNormalization: scale, bias
            for weight, known_weight in zip(arrays[1:], known_arrays[1:]):
                if weight is not None:
                    recovered[_identify(known_weight, of_shape(1))] = weight

    model = CoarseLoFTR(config)
    merged = {k: torch.from_numpy(np.array(recovered.get(k, fresh[k]), dtype=v.dtype)) for k, v in state.items()}
    model.load_state_dict(merged)
    if calibration:
        calibrate_batchnorm(model, calibration)
    return model.eval()


def calibrate_batchnorm(model: CoarseLoFTR, images: Sequence[np.ndarray]) -> None:
    """Re-express each identity BatchNorm by its input's statistics on ``images``.

    BatchNorm(z) = z + b becomes (z - mean) / std * std + mean + b: the same function in eval
    mode, and nearly the same under training-mode batch statistics.
    """
    import cv2

    size = (model.config.input_width, model.config.input_height)
    batch = torch.stack([torch.from_numpy(cv2.resize(i, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0)[None] for i in images])
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            def record(module, inputs, output, name=name):
                z = inputs[0]
                stats[name] = (z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False))
            hooks.append(module.register_forward_hook(record))
    model.eval()
    with torch.no_grad():
        model.extract_features(batch)
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        for name, (mean, var) in stats.items():
            bn = model.get_submodule(name)
            std = (var + bn.eps).sqrt()
            # eval: (z - mean) / std * std + (mean + b) = z + b with b the folded bias.
            bn.bias.copy_(bn.bias + mean)
            bn.weight.copy_(std)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)


def checkpoint_from_onnx(onnx_path: str | Path, output: str | Path, calibration: Sequence[np.ndarray] = ()) -> Path:
    """Write a project checkpoint (``model_state_dict`` + ``config``) recovered from an ONNX graph."""
    model = model_from_onnx(onnx_path, calibration)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": model.state_dict(), "config": model.config.to_dict(), "source": Path(onnx_path).name}, output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coarse_loftr_train.onnx_weights", description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path, help="an .onnx file written by coarse-loftr export")
    parser.add_argument("output", type=Path, help="the checkpoint to write (.pt)")
    parser.add_argument("--calibration-images", type=Path, help="a folder of images for the BatchNorm statistics (e.g. the training images)")
    parser.add_argument("--calibration-count", type=int, default=32, help="images of that folder to use (default 32)")
    args = parser.parse_args(argv)
    images = []
    if args.calibration_images:
        import cv2

        files = sorted(p for p in args.calibration_images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[: args.calibration_count]
        images = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    try:
        print(checkpoint_from_onnx(args.onnx, args.output, images))
    except ModelError as error:
        parser.exit(2, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
