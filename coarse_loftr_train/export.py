"""ONNX export of the matcher, with match extraction inside the graph.

The exported graph takes two images and returns at most K matches, so K rows leave the
runtime instead of an L0 x L1 confidence matrix. Only ops TensorRT 8.5+ builds are used
(TopK with a constant K, ReduceMax, ArgMax, Gather; no NonZero).

Input size: the graphs are exported with dynamic height and width by default (ONNX dynamic
axes ``height``/``width`` on the images, ``rows``/``columns`` on the sequence-mode feature
maps). Everything that depends on the grid (the cells' pixels, the border mask, the
two-level row argmax, the refinement's fine-pixel squares, the position encoding's slice) is
computed from the tensors' shapes, so one graph runs at any multiple of the coarse stride up
to the position encoding's 256 x 256 cells. The number of output rows K stays constant (a
TensorRT TopK needs a constant K); a grid of fewer than K cells returns its invalid rows as
padding. ``dynamic=False`` writes the fixed-shape graphs of earlier releases.

Coordinate convention: coarse cell (row, col) stands for the model-input pixel
(x, y) = (col * stride, row * stride), the centre of its feature's receptive field and
the point LoFTR's coarse supervision uses. Cell indices are row-major.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from coarse_loftr_ros.backends.base import FINE_SCORE_NAME, INPUT_NAMES, METADATA_PREFIX, OUTPUT_NAMES

from .config import ModelConfig
from .correlation import CorrelationConfig, CorrelationRefinement
from .model import CoarseLoFTR, similarity_matrix, window_offsets

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
    border: int = 0


Grid = tuple  # (columns, rows) of coarse cells: ints, or sizes traced from a tensor's shape


def grid_of(features: torch.Tensor) -> Grid:
    """(columns, rows) of a feature map ``[B, C, rows, columns]`` (traced as shapes in an export)."""
    return features.shape[3], features.shape[2]


def cell_points(cells: torch.Tensor, columns, stride: int) -> torch.Tensor:
    """Model-input pixel (x, y) of row-major coarse cells (int ``[...]``): float32 ``[..., 2]``."""
    column = cells % columns
    row = torch.div(cells, columns, rounding_mode="trunc")  # cells >= 0: floor; one ONNX Div, not Div with sign fixes
    return torch.stack([column, row], dim=-1).to(torch.float32) * stride


def cell_coordinates(columns: int, rows: int, stride: int) -> torch.Tensor:
    """Model-input pixel (x, y) of every coarse cell, row-major, float32 ``[rows * columns, 2]``."""
    return cell_points(torch.arange(rows * columns), columns, stride)


def inside_border(cells: torch.Tensor, grid: Grid, border: int) -> torch.Tensor:
    """Bool like ``cells``: True for row-major cells at least ``border`` cells from the grid's edge."""
    columns, rows = grid
    row = torch.div(cells, columns, rounding_mode="trunc")  # cells >= 0
    column = cells % columns
    return (row >= border) & (row < rows - border) & (column >= border) & (column < columns - border)


def border_mask(columns: int, rows: int, border: int) -> torch.Tensor:
    """Row-major bool ``[rows * columns]``: True for cells at least ``border`` cells from the edge."""
    return inside_border(torch.arange(rows * columns), (columns, rows), border)


def logsumexp_rows(x: torch.Tensor) -> torch.Tensor:
    """Log-sum-exp over the last axis, keepdim: ``x - log_softmax(x)`` read in the first column.

    One fused LogSoftmax kernel, which keeps each row in cache: in ONNX Runtime about 1.7x
    faster than max, subtract, exp and sum as four passes (ReduceLogSumExp is slower still).
    The error is about one float32 ulp of the larger of ``|x|`` and the log-probability.
    """
    return x[..., :1] - torch.log_softmax(x, dim=-1)[..., :1]


def row_argmax(values: torch.Tensor, group: int) -> torch.Tensor:
    """Index of each row's maximum ``[B, R]`` of ``values`` ``[B, R, C]`` (the first one on ties).

    Two-level search, about twice as fast in ONNX Runtime as one TopK/ArgMax over the rows: the
    maximum of each block of ``group`` columns (a vectorised reduction), the best block,
    then the best column inside it. ``group`` must divide C (here: one row of grid cells).
    """
    batch, rows, columns = values.shape
    count = columns // group  # blocks per row
    block = values.reshape(batch, rows, count, group).amax(dim=3).argmax(dim=2)  # [B, R]
    first = torch.arange(batch * rows, device=values.device).reshape(batch, rows) * count  # each row's first block
    inside = values.reshape(-1, group)[first + block]  # [B, R, group]: the best block's values, whole rows gathered
    return block * group + inside.argmax(dim=2)


def log_normalisers(similarity: torch.Tensor, similarity_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-sum-exp of the logits over each row ``[1, L0, 1]`` and each column ``[1, 1, L1]``.

    ``similarity_t`` is the transposed logits ``[1, L1, L0]``. The dual-softmax confidence
    is ``exp(2 * s - row - column)``, so matching can work on its logarithm and
    exponentiate only the values it keeps.
    """
    return logsumexp_rows(similarity), logsumexp_rows(similarity_t).transpose(1, 2)


class MatchExtraction(nn.Module):
    """Dual-softmax logits -> fixed-size top-K mutual-nearest-neighbour matches.

    Takes the logits ``s`` ``[1, L0, L1]`` and their transpose ``[1, L1, L0]`` (a second
    matmul: a Transpose node would be folded away by ONNX Runtime), and works on the log
    confidence ``2 s - row - column`` without building it, a confidence matrix or a mask:
    image 0's best cell in image 1 is the row maximum of ``s - column / 2``, image 1's best
    in image 0 the row maximum of ``s^T - row / 2``. Every reduction runs along the
    contiguous last axis, several times faster on a CPU than reducing across rows.
    Returns (scores ``[1, K]``: confidence, descending, zero for invalid rows; cells0,
    cells1 ``[1, K]``, cell 0 on invalid rows; the row and column log-normalisers for the
    refinement). K is ``extraction.top_k`` at every grid size: the confidences are padded
    with K zeros before the TopK, so a grid of fewer cells fills its last rows with invalid
    ones, and on a larger grid the padding, all zero and after every cell, changes nothing.
    ``grid0``/``grid1`` are the (columns, rows) of the two images' grids.
    """

    def __init__(self, extraction: ExtractionConfig) -> None:
        super().__init__()
        self.top_k = extraction.top_k
        self.threshold = extraction.threshold
        self.border = extraction.border

    def forward(self, similarity: torch.Tensor, similarity_t: torch.Tensor, grid0: Grid, grid1: Grid) -> tuple[torch.Tensor, ...]:
        length0 = similarity.shape[1]
        row_norm, column_norm = log_normalisers(similarity, similarity_t)  # [1, L0, 1], [1, 1, L1]
        half_row, half_column = 0.5 * row_norm, 0.5 * column_norm
        best_column = row_argmax(similarity - half_column, grid1[0])  # [1, L0]
        scored_t = similarity_t - half_row.transpose(1, 2)  # [1, L1, L0]
        column_best = scored_t.amax(dim=2)  # [1, L1]
        # Each row's best value read from the same tensor as the column maxima, so that a
        # mutual match compares two equal numbers.
        rows = torch.arange(length0, device=similarity.device)[None]
        row_best = torch.gather(scored_t.reshape(1, -1), 1, best_column * length0 + rows)  # [1, L0]
        mutual = row_best >= torch.gather(column_best, 1, best_column)
        confidence = torch.exp(2.0 * row_best - torch.gather(column_norm[:, 0], 1, best_column))
        valid = mutual & (confidence > self.threshold)
        if self.border:
            rows = torch.arange(length0, device=similarity.device)[None]
            valid = valid & inside_border(rows, grid0, self.border) & inside_border(best_column, grid1, self.border)
        kept = confidence * valid.to(confidence.dtype)
        padded = torch.cat([kept, torch.zeros(1, self.top_k, dtype=kept.dtype, device=kept.device)], dim=1)
        scores, cells0 = torch.topk(padded, self.top_k, dim=1)
        cells0 = torch.where(scores > 0, cells0, torch.zeros_like(cells0))  # padding rows -> cell 0
        cells1 = torch.gather(best_column, 1, cells0)
        return scores, cells0, cells1, row_norm, column_norm


class CellCentres(nn.Module):
    """No refinement: every match sits on its cells' points.

    A refinement maps (similarity ``[1, L0, L1]``, row and column log-normalisers, cells0,
    cells1 ``[1, K]``) to keypoints0, keypoints1 ``[1, K, 2]`` in model-input pixels.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, similarity, row_norm, column_norm, cells0, cells1, grid0: Grid, grid1: Grid) -> tuple[torch.Tensor, torch.Tensor]:
        return cell_points(cells0, grid0[0], self.stride), cell_points(cells1, grid1[0], self.stride)


class ExpectationRefinement(CellCentres):
    """Sub-cell positions without learning: the confidence-weighted mean position over the
    3x3 cell neighbourhood of each matched cell.

    In image 1 the weights are the confidences of image 0's cell against the 3x3 cells
    around the match; in image 0, symmetrically, of the 3x3 cells around it against image
    1's cell. Cells off the grid weigh zero. Only 9 values per match are read.
    """

    def __init__(self, stride: int) -> None:
        super().__init__(stride)
        dx, dy = window_offsets(3)
        self.register_buffer("dx", dx[None], persistent=False)
        self.register_buffer("dy", dy[None], persistent=False)
        self.register_buffer("offsets", torch.stack([dx, dy], -1).float() * stride, persistent=False)

    def _neighbours(self, cells: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
        """Cells ``[K]`` -> 3x3 neighbour cells ``[K, 9]`` (clamped) and their on-grid mask."""
        columns, rows = grid
        row = torch.div(cells, columns, rounding_mode="floor")[:, None] + self.dy
        column = (cells % columns)[:, None] + self.dx
        inside = (row >= 0) & (row < rows) & (column >= 0) & (column < columns)
        return row.clamp(0, rows - 1) * columns + column.clamp(0, columns - 1), inside

    def _shift(self, log_confidence: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """Log confidences ``[K, 9]`` -> weighted mean offset ``[K, 2]`` in pixels."""
        weights = torch.exp(log_confidence - log_confidence.amax(dim=1, keepdim=True)) * inside.to(log_confidence.dtype)
        return torch.matmul(weights, self.offsets) / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, similarity, row_norm, column_norm, cells0, cells1, grid0: Grid, grid1: Grid) -> tuple[torch.Tensor, torch.Tensor]:
        c0, c1 = cells0[0], cells1[0]
        length1 = similarity.shape[2]
        flat = similarity.reshape(-1)
        rows, columns = row_norm.reshape(-1), column_norm.reshape(-1)
        around1, inside1 = self._neighbours(c1, grid1)
        log1 = 2.0 * flat[c0[:, None] * length1 + around1] - rows[c0][:, None] - columns[around1]
        around0, inside0 = self._neighbours(c0, grid0)
        log0 = 2.0 * flat[around0 * length1 + c1[:, None]] - rows[around0] - columns[c1][:, None]
        keypoints0 = cell_points(c0, grid0[0], self.stride) + self._shift(log0, inside0)
        keypoints1 = cell_points(c1, grid1[0], self.stride) + self._shift(log1, inside1)
        return keypoints0[None], keypoints1[None]


class OneWayRefinement(CellCentres):
    """The model's learned sub-pixel refinement, one pass, image 0 -> image 1.

    Reads the fine features carried in each image's feature map
    (``CoarseLoFTR.extract_features``); keypoints0 stay on the cell points, keypoints1 move
    by the predicted offsets (at most ``refine_window // 2`` fine cells).
    """

    def __init__(self, stride: int, model: CoarseLoFTR) -> None:
        super().__init__(stride)
        self.model = model

    def forward(self, features0, features1, cells0, cells1) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = self.model.refine_matches(features0, features1, cells0, cells1)
        return self._points(cells0, features0), self._points(cells1, features1) + offsets

    def _points(self, cells: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Model-input pixels of ``cells`` on the grid of the feature map ``features``."""
        return cell_points(cells, grid_of(features)[0], self.stride)


class LearnedRefinement(OneWayRefinement):
    """The learned refinement both ways, each re-centred once, averaged (the default).

    Forward, image 0's cell point ``c0`` corresponds to ``c1 + f`` in image 1; backward
    (the same weights, images swapped), image 1's cell point ``c1`` corresponds to
    ``c0 + b`` in image 0. Each estimate is refined a second time in a 3x3 window centred
    on the first one (the soft-argmax is most accurate near the window centre, with few
    distractors). Where the mapping between the images is locally affine the midpoints
    ``(c0 + b / 2, c1 + f / 2)`` correspond too, and the two estimates' errors partly
    cancel. Measured on the held-out homography set, same checkpoint, AUC@3/5/10 px: one
    way, one pass 34.9/54.7/74.9; both ways, one pass 39.1/56.3/74.4; one way re-centred
    (3x3) 42.4/60.2/77.2; both ways re-centred (5x5) 44.6/60.7/78.0; both ways re-centred
    (3x3) 49.9/64.4/79.3; a third pass 49.9/64.2/79.4 (not kept).
    """

    recentred_window = 3  # side, in fine cells, of the second, re-centred search

    def forward(self, features0, features1, cells0, cells1) -> tuple[torch.Tensor, torch.Tensor]:
        fine0, fine1 = self.model.fine_features(features0), self.model.fine_features(features1)
        forward = self._refine(fine0, fine1, cells0, cells1)
        backward = self._refine(fine1, fine0, cells1, cells0)
        return self._points(cells0, features0) + 0.5 * backward, self._points(cells1, features1) + 0.5 * forward

    def _refine(self, fine0, fine1, cells0, cells1) -> torch.Tensor:
        """Offsets (pixels) of ``cells0 -> cells1``: one correlation over the square that both
        passes read (the first window plus the re-centring reach), two soft-argmaxes."""
        refinement = self.model.refinement
        radius = refinement.window // 2 + self.recentred_window // 2
        scores = refinement.correlate(fine0, fine1, cells0, cells1, radius)
        first = refinement.soft_argmax(scores, refinement.window)  # fine cells
        second = refinement.soft_argmax(scores, self.recentred_window, torch.round(first))
        return second * refinement.fine_stride


REFINEMENTS = {
    "expectation": ExpectationRefinement,
    "none": CellCentres,
    "learned": LearnedRefinement,
    "learned-oneway": OneWayRefinement,
}


def resolve_refinement(model: CoarseLoFTR, refinement: str) -> str:
    """``auto``: the model's learned refinement when it has one, else ``expectation``."""
    if refinement == "auto":
        return "learned" if model.refinement is not None else "expectation"
    if refinement not in REFINEMENTS:
        raise ValueError(f"unknown refinement {refinement!r}; choose auto, {', '.join(REFINEMENTS)}")
    if issubclass(REFINEMENTS[refinement], OneWayRefinement) and model.refinement is None:
        raise ValueError(f"model {model.config.name!r} has no learned refinement (refine_window is 0)")
    return refinement


class FeatureMatcher(nn.Module):
    """Per-frame features of two images (``FeatureExtractor``) -> the tensors named in ``OUTPUT_NAMES``
    (and ``FINE_SCORE_NAME`` with the fine stage, ``fine_stage``: ``coarse_loftr_train.correlation``).

    With the fine stage the feature maps carry each image's pixels as their last ``stride^2``
    channels (``FeatureExtractor``), so that the stage can read them."""

    def __init__(
        self,
        model: CoarseLoFTR,
        extraction: ExtractionConfig = ExtractionConfig(),
        refinement: str = "auto",
        fine_stage: CorrelationConfig | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.extraction = MatchExtraction(extraction)
        kind = REFINEMENTS[resolve_refinement(model, refinement)]
        learned = (model,) if issubclass(kind, OneWayRefinement) else ()  # learned ones read the model's weights
        self.refinement = kind(model.config.coarse_stride, *learned)
        self.fine_stage = CorrelationRefinement(fine_stage) if fine_stage is not None else None

    def forward(self, features0: torch.Tensor, features1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # the model reads its channels from the front of the maps; the fine stage the pixels at their end
        images = (pixels_of(features0, self.model), pixels_of(features1, self.model)) if self.fine_stage is not None else None
        return self.match(features0, features1, images)

    def match(self, features0: torch.Tensor, features1: torch.Tensor, images: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
        """The outputs from feature maps (with or without the pixels after their channels) and, for the fine stage, the images ``[1, H, W]``."""
        feat0, feat1 = self.model.transform(features0, features1, encoded=True)
        temperature = self.model.config.temperature
        similarity = similarity_matrix(feat0, feat1, temperature)
        grid0, grid1 = grid_of(features0), grid_of(features1)
        scores, cells0, cells1, row_norm, column_norm = self.extraction(similarity, similarity_matrix(feat1, feat0, temperature), grid0, grid1)
        if isinstance(self.refinement, OneWayRefinement):
            keypoints0, keypoints1 = self.refinement(features0, features1, cells0, cells1)
        else:
            keypoints0, keypoints1 = self.refinement(similarity, row_norm, column_norm, cells0, cells1, grid0, grid1)
        outputs = (keypoints0, keypoints1, scores, scores > 0, cells0.to(torch.int32), cells1.to(torch.int32))
        if self.fine_stage is None:
            return outputs
        keypoints0, keypoints1, fine_score = self.fine_stage(images[0], images[1], keypoints0, keypoints1)
        return (keypoints0, keypoints1, *outputs[2:], fine_score)


def append_pixels(features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """A feature map ``[1, C, H/s, W/s]`` with the image ``[1, 1, H, W]`` appended as ``s^2``
    channels (a reinterpretation of its memory, as the fine features are carried)."""
    return torch.cat([features, image.reshape(features.shape[0], -1, *features.shape[2:])], dim=1)


def pixels_of(features: torch.Tensor, model: CoarseLoFTR) -> torch.Tensor:
    """The image ``[1, H, W]`` that ``append_pixels`` carries in a feature map (its last ``s^2`` channels)."""
    stride = model.config.coarse_stride
    return features[:, -stride * stride :].reshape(features.shape[0], features.shape[2] * stride, features.shape[3] * stride)


class FeatureExtractor(nn.Module):
    """One image ``[1, 1, H, W]`` -> all of matching that sees this image only (the sequence-mode
    first graph): CNN, position encoding, the transformer's leading self-attention layers
    (``CoarseLoFTR.extract_features(..., encode=True)``); with ``pixels`` the image itself too
    (``append_pixels``), for the fine stage."""

    def __init__(self, model: CoarseLoFTR, pixels: bool = False) -> None:
        super().__init__()
        self.model = model
        self.pixels = pixels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.model.extract_features(image, encode=True)
        return append_pixels(features, image) if self.pixels else features


class ExportableMatcher(nn.Module):
    """Two images ``[1, 1, H, W]`` in [0, 1] -> the tensors named in ``OUTPUT_NAMES`` (and the
    fine score with ``fine_stage``).

    Both images go through the CNN as one batch of two.
    """

    def __init__(
        self,
        model: CoarseLoFTR,
        extraction: ExtractionConfig = ExtractionConfig(),
        refinement: str = "auto",
        fine_stage: CorrelationConfig | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.matcher = FeatureMatcher(model, extraction, refinement, fine_stage)

    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.extract_features(torch.cat([image0, image1], dim=0), encode=True)
        images = (image0[:, 0], image1[:, 0]) if self.matcher.fine_stage is not None else None
        return self.matcher.match(features[:1], features[1:], images)


def sequence_graph_paths(path: str | Path) -> tuple[Path, Path]:
    """Paths of the two sequence-mode graphs written beside a pair-mode model file."""
    path = Path(path)
    return path.with_suffix(".features.onnx"), path.with_suffix(".matching.onnx")


IMAGE_AXES = {2: "height", 3: "width"}  # dynamic axes of an image input [1, 1, H, W], pixels
FEATURE_AXES = {2: "rows", 3: "columns"}  # of a sequence-mode feature map [1, C, H / stride, W / stride], cells


def _export_graph(
    module: nn.Module,
    inputs: tuple,
    path: Path,
    input_names,
    output_names,
    metadata: dict[str, str],
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> None:
    import onnx

    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated, but it writes opset 17, the newest that
        # TensorRT 8.5/8.6 parse; the torch.export-based one starts at opset 18.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # shape-inference notes of the exporter
        torch.onnx.export(
            module.eval(),
            inputs,
            str(tmp),
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
            dynamic_axes=dynamic_axes,
        )
    proto = onnx.load(str(tmp))
    _declare_output_shapes(proto, module, inputs, dynamic_axes or {})
    _put_metadata(proto, metadata)
    proto.producer_name = "coarse_loftr_ros"
    onnx.checker.check_model(proto, full_check=True)
    _save(proto, path)


def set_metadata(output: str | Path, entries: dict[str, str]) -> None:
    """Add or replace ``entries`` (keys without the prefix) in the metadata of the graphs
    ``export_onnx`` wrote to ``output``: the pair graph and, where present, its sequence graphs."""
    import onnx

    paths = [Path(output), *sequence_graph_paths(output)]
    for path in (p for p in paths if p.is_file()):
        proto = onnx.load(str(path))
        _put_metadata(proto, entries)
        _save(proto, path)


def _put_metadata(proto, entries: dict[str, str]) -> None:
    """Set ``entries`` (keys without ``METADATA_PREFIX``) in ``proto``'s metadata, replacing
    entries of the same key."""
    keep = [(e.key, e.value) for e in proto.metadata_props if e.key.removeprefix(METADATA_PREFIX) not in entries]
    del proto.metadata_props[:]
    for key, value in [*keep, *((METADATA_PREFIX + k, v) for k, v in entries.items())]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _save(proto, path: Path) -> None:
    """Write ``proto`` to ``path`` whole: to a temporary file beside it, then renamed."""
    import onnx

    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)


def _declare_output_shapes(proto, module: nn.Module, inputs: tuple, dynamic_axes: dict[str, dict[int, str]]) -> None:
    """Write the example's size into every output dimension that is not a dynamic axis.

    With dynamic inputs the exporter names every output dimension it cannot prove constant
    (``TopKconfidence_dim_1``), although K, the batch and the channels never change; a
    runtime reading the declared shapes then sees them as unknown.
    """
    with torch.no_grad():
        example = module(*inputs)
    example = example if isinstance(example, tuple) else (example,)
    for value, tensor in zip(proto.graph.output, example):
        dims = value.type.tensor_type.shape.dim
        axes = dynamic_axes.get(value.name, {})
        for index, size in enumerate(tensor.shape):
            if index in axes:
                dims[index].dim_param = axes[index]
            else:
                dims[index].dim_value = int(size)


def export_onnx(
    model: CoarseLoFTR,
    output: str | Path,
    extraction: ExtractionConfig = ExtractionConfig(),
    refinement: str = "auto",
    model_name: str | None = None,
    sequence_graphs: bool = True,
    dynamic: bool = True,
    fine_stage: CorrelationConfig | None = None,
) -> Path:
    """Write the pair-mode matcher (ONNX, opset 17) to ``output``.

    With ``sequence_graphs`` it also writes the two sequence-mode graphs beside it
    (``*.features.onnx``: image -> coarse features; ``*.matching.onnx``: two feature
    maps -> matches), so that each frame's CNN runs once.

    ``dynamic`` (default): the image height and width are dynamic axes (``IMAGE_AXES``;
    ``FEATURE_AXES`` on the feature maps), so a runtime may feed any multiple of the
    coarse stride up to ``max_input_size`` (metadata); the model config's
    ``input_width`` x ``input_height`` is the traced example and the runtime's default.
    ``dynamic=False``: fixed shapes of that size (use ``ModelConfig.with_input_size``).

    ``fine_stage``: place each match by correlating image patches inside the graphs
    (``coarse_loftr_train.correlation``); the graphs then also output ``fine_score``.
    """
    config: ModelConfig = model.config
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    top_k = extraction.top_k
    refinement = resolve_refinement(model, refinement)
    max_rows, max_columns = model.pos_encoding.max_shape
    metadata = {
        "config": json.dumps(config.to_dict()),
        "name": model_name or output.stem,
        "stride": str(config.coarse_stride),
        "top_k": str(top_k),
        "threshold": repr(extraction.threshold),
        "border": str(extraction.border),
        "refinement": refinement,
        "input_size": f"{config.input_width}x{config.input_height}",  # the default (the traced example)
        "fine_stage": json.dumps(dataclasses.asdict(fine_stage)) if fine_stage is not None else "none",
    }
    output_names = list(OUTPUT_NAMES) + ([FINE_SCORE_NAME] if fine_stage is not None else [])
    if dynamic:
        metadata["dynamic_input"] = "true"
        metadata["max_input_size"] = f"{max_columns * config.coarse_stride}x{max_rows * config.coarse_stride}"
    image_axes = {name: IMAGE_AXES for name in INPUT_NAMES} if dynamic else None
    image = torch.zeros(1, 1, config.input_height, config.input_width)
    _export_graph(ExportableMatcher(model, extraction, refinement, fine_stage), (image, image), output, INPUT_NAMES, output_names, metadata, image_axes)
    if sequence_graphs:
        features_path, matching_path = sequence_graph_paths(output)
        extractor = FeatureExtractor(model, pixels=fine_stage is not None)
        with torch.no_grad():
            features = extractor(image)  # an example input for tracing the matching graph
        feature_axes = {"image": IMAGE_AXES, "features": FEATURE_AXES} if dynamic else None
        _export_graph(extractor, (image,), features_path, ["image"], ["features"], metadata, feature_axes)
        matching_axes = {"features0": FEATURE_AXES, "features1": FEATURE_AXES} if dynamic else None
        _export_graph(
            FeatureMatcher(model, extraction, refinement, fine_stage), (features, features), matching_path,
            ["features0", "features1"], output_names, metadata, matching_axes,
        )
    log.info(
        "wrote %s (%s %dx%d input, top-%d, refinement %s, fine stage %s)", output, "dynamic, default" if dynamic else "fixed",
        config.input_width, config.input_height, top_k, refinement, "on" if fine_stage is not None else "off",
    )
    return output
