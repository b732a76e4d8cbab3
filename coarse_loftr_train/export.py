"""ONNX export of the matcher, with match extraction inside the graph.

The exported graph takes two images and returns at most K matches, so K rows leave the
runtime instead of an L0 x L1 confidence matrix. Only static shapes and ops TensorRT
8.5+ builds are used (TopK, ReduceMax, ArgMax, Gather; no NonZero).

Coordinate convention: coarse cell (row, col) stands for the model-input pixel
(x, y) = (col * stride, row * stride), the centre of its feature's receptive field and
the point LoFTR's coarse supervision uses. Cell indices are row-major.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from coarse_loftr_ros.backends.base import INPUT_NAMES, METADATA_PREFIX, OUTPUT_NAMES

from .config import ModelConfig
from .model import CoarseLoFTR

log = logging.getLogger(__name__)

OPSET = 17  # the newest opset TensorRT 8.5/8.6 parse


@dataclass(frozen=True)
class ExtractionConfig:
    """Match extraction settings baked into an exported graph.

    Attributes:
        top_k: fixed number of output rows (at most the number of cells of image 0).
        threshold: minimum dual-softmax confidence of a match; the runtime may raise it.
        border: coarse cells removed at each image border.
    """

    top_k: int = 1024
    threshold: float = 0.0
    border: int = 1


def cell_coordinates(columns: int, rows: int, stride: int) -> torch.Tensor:
    """Model-input pixel (x, y) of every coarse cell, row-major, float32 ``[rows * columns, 2]``."""
    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(columns), indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() * stride


def border_mask(columns: int, rows: int, border: int) -> torch.Tensor:
    """Row-major bool ``[rows * columns]``: True for cells at least ``border`` cells from the edge."""
    mask = torch.zeros(rows, columns, dtype=torch.bool)
    mask[border : rows - border, border : columns - border] = True
    return mask.reshape(-1)


class MatchExtraction(nn.Module):
    """Confidence matrix ``[B, L0, L1]`` -> fixed-size top-K mutual-nearest-neighbour matches."""

    def __init__(self, grid: tuple[int, int], stride: int, extraction: ExtractionConfig) -> None:
        super().__init__()
        columns, rows = grid
        self.top_k = min(extraction.top_k, columns * rows)
        self.threshold = extraction.threshold
        self.register_buffer("coordinates", cell_coordinates(columns, rows, stride), persistent=False)
        inner = border_mask(columns, rows, extraction.border)
        self.register_buffer("inner0", inner[None, :, None], persistent=False)
        self.register_buffer("inner1", inner[None, None, :], persistent=False)

    def forward(self, confidence: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask = (confidence > self.threshold) & self.inner0 & self.inner1
        mask = mask & (confidence == confidence.amax(dim=2, keepdim=True))
        mask = mask & (confidence == confidence.amax(dim=1, keepdim=True))
        # Mutual nearest neighbours leave at most one candidate per row.
        row_best, best_column = (confidence * mask.to(confidence.dtype)).max(dim=2)
        scores, cells0 = torch.topk(row_best, self.top_k, dim=1)
        cells1 = torch.gather(best_column, 1, cells0)
        return (
            self.coordinates[cells0],
            self.coordinates[cells1],
            scores,
            scores > 0,
            cells0.to(torch.int32),
            cells1.to(torch.int32),
        )


class ExportableMatcher(nn.Module):
    """Two images ``[1, 1, H, W]`` in [0, 1] -> the tensors named in ``OUTPUT_NAMES``."""

    def __init__(self, model: CoarseLoFTR, extraction: ExtractionConfig = ExtractionConfig()) -> None:
        super().__init__()
        config = model.config
        self.model = model
        grid = (config.input_width // config.coarse_stride, config.input_height // config.coarse_stride)
        self.extraction = MatchExtraction(grid, config.coarse_stride, extraction)

    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        if model.refinement is None:
            return self.extraction(model(image0, image1))
        # Learned sub-pixel refinement: keypoints1 move by the predicted offsets.
        batch = image0.shape[0]
        coarse, fine = model.extract_features_with_fine(torch.cat([image0, image1], dim=0))
        confidence = model.match_features(coarse[:batch], coarse[batch:])[1]
        keypoints0, keypoints1, scores, valid, cells0, cells1 = self.extraction(confidence)
        keypoints1 = keypoints1 + model.refinement(fine[:batch], fine[batch:], cells0, cells1)
        return keypoints0, keypoints1, scores, valid, cells0, cells1


def export_onnx(
    model: CoarseLoFTR,
    output: str | Path,
    extraction: ExtractionConfig = ExtractionConfig(),
    model_name: str | None = None,
) -> Path:
    """Write the matcher with in-graph extraction to ``output`` (ONNX, opset 17) and check it.

    The input size is the model config's ``input_width`` x ``input_height``; use
    ``ModelConfig.with_input_size`` (or ``--width/--height``) for another one.
    """
    import onnx

    config: ModelConfig = model.config
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportableMatcher(model.eval(), extraction).eval()
    dummy = torch.zeros(1, 1, config.input_height, config.input_width)
    tmp = output.with_name(output.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks in the model are constant for a static export. The TorchScript
        # exporter is deprecated, but it writes opset 17, the newest that TensorRT 8.5/8.6
        # parse; the torch.export-based one starts at opset 18.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (dummy, dummy),
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    proto = onnx.load(str(tmp))
    metadata = {
        "config": json.dumps(config.to_dict()),
        "name": model_name or output.stem,
        "stride": str(config.coarse_stride),
        "top_k": str(wrapper.extraction.top_k),
        "threshold": repr(extraction.threshold),
        "border": str(extraction.border),
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    proto.producer_name = "coarse_loftr_ros"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))
    tmp.replace(output)
    log.info("wrote %s (%dx%d input, top-%d)", output, config.input_width, config.input_height, wrapper.extraction.top_k)
    return output
