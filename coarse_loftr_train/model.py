"""The coarse level of LoFTR (Sun et al., CVPR 2021) in plain PyTorch.

Only matmul, reshape, sum and standard layers are used (no einsum, no einops), so the
network exports to ONNX (static or dynamic height and width) and builds in TensorRT 8.5+.

Tensor conventions: images are ``[B, 1, H, W]`` float32 grayscale in [0, 1]; coarse
features are ``[B, L, C]`` with ``L = (H / stride) * (W / stride)`` cells in row-major
order (cell index ``i = row * (W / stride) + col``).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


def _conv3x3(in_dim: int, out_dim: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_dim, out_dim, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_dim: int, out_dim: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_dim, out_dim, kernel_size=1, stride=stride, padding=0, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block; a strided block gets a 1x1 projection shortcut."""

    def __init__(self, in_dim: int, dim: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_dim, dim, stride)
        self.conv2 = _conv3x3(dim, dim)
        self.bn1 = nn.BatchNorm2d(dim)
        self.bn2 = nn.BatchNorm2d(dim)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            None if stride == 1 else nn.Sequential(_conv1x1(in_dim, dim, stride), nn.BatchNorm2d(dim))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


def _fpn_merge(top_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        _conv3x3(top_dim, top_dim), nn.BatchNorm2d(top_dim), nn.LeakyReLU(), _conv3x3(top_dim, out_dim)
    )


class ResNetFPN(nn.Module):
    """ResNet-FPN backbone of LoFTR (``ResNetFPN_8_2`` or ``ResNetFPN_16_4``).

    ``forward`` returns only the coarse map; the fine (FPN) branch is computed by
    ``forward_fine`` for refinement and training, so coarse-only inference does no dead work.
    Parameter names follow the original implementation so its checkpoints load unchanged.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dims = config.block_dims
        self.conv1 = nn.Conv2d(1, config.initial_dim, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.initial_dim)
        self.relu = nn.ReLU(inplace=True)
        in_dims = (config.initial_dim,) + dims[:-1]
        strides = (1,) + (2,) * (len(dims) - 1)
        for index, (in_dim, dim, stride, blocks) in enumerate(zip(in_dims, dims, strides, config.stage_blocks), start=1):
            layer = nn.Sequential(*(BasicBlock(in_dim if b == 0 else dim, dim, stride if b == 0 else 1) for b in range(blocks)))
            setattr(self, f"layer{index}", layer)  # 0 blocks: an identity
        top = len(dims)  # index of the coarsest stage
        setattr(self, f"layer{top}_outconv", _conv1x1(dims[-1], dims[-1]))
        # FPN: stage (top-1) merges the upsampled coarse map, stage (top-2) gives the fine map.
        setattr(self, f"layer{top - 1}_outconv", _conv1x1(dims[-2], dims[-1]))
        setattr(self, f"layer{top - 1}_outconv2", _fpn_merge(dims[-1], dims[-2]))
        setattr(self, f"layer{top - 2}_outconv", _conv1x1(dims[-3], dims[-2]))
        setattr(self, f"layer{top - 2}_outconv2", _fpn_merge(dims[-2], dims[-3]))
        self.num_stages = top

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        outputs = []
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
            outputs.append(x)
        return outputs

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Coarse feature map ``[B, d_model, H / stride, W / stride]``."""
        top = self.num_stages
        return getattr(self, f"layer{top}_outconv")(self._stages(image)[-1])

    def forward_with_stage(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse map and the raw backbone stage at the fine stride (``coarse_stride / 4``).

        The stage output is computed on the way to the coarse map anyway, so the learned
        refinement gets its features at no extra backbone cost.
        """
        top = self.num_stages
        stages = self._stages(image)
        return getattr(self, f"layer{top}_outconv")(stages[-1]), stages[-3]

    def forward_fine(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse and fine feature maps (the full FPN), for refinement and training."""
        top = self.num_stages
        stages = self._stages(image)
        coarse = getattr(self, f"layer{top}_outconv")(stages[-1])
        x = F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=True)
        x = getattr(self, f"layer{top - 1}_outconv2")(getattr(self, f"layer{top - 1}_outconv")(stages[-2]) + x)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        fine = getattr(self, f"layer{top - 2}_outconv2")(getattr(self, f"layer{top - 2}_outconv")(stages[-3]) + x)
        return coarse, fine


class PositionEncodingSine(nn.Module):
    """2-D sinusoidal position encoding of LoFTR, for any map up to ``max_shape`` cells.

    ``temp_bug_fix=False`` reproduces the frequency term of the original release
    (``-log(10000) / d_model // 2``, which floors to -1), used by the released LoFTR
    outdoor and reduced-student weights; ``True`` is the corrected formula.

    The encoding is separable: channels ``4i`` and ``4i + 1`` depend on the column only,
    ``4i + 2`` and ``4i + 3`` on the row only. It is stored as a column part
    ``[1, C, 1, max_w]`` and a row part ``[1, C, max_h, 1]`` (each zero on the other's
    channels) and added as ``x + (column part + row part)``, sliced to the map's size at run
    time: the same float32 values as the full ``[1, C, max_h, max_w]`` table (adding an exact
    zero), but 1/128 of its size, so an exported graph with dynamic height and width carries
    it in a few kB instead of 8 MB.
    """

    def __init__(self, d_model: int, temp_bug_fix: bool = False, max_shape: tuple[int, int] = (256, 256)) -> None:
        super().__init__()
        self.max_shape = tuple(max_shape)  # (rows, columns) of coarse cells
        exponent = -math.log(10000.0) / (d_model // 2) if temp_bug_fix else -math.log(10000.0) / d_model // 2
        div_term = torch.exp(torch.arange(0, d_model // 2, 2).float() * exponent)[:, None]
        x_position = torch.arange(1, max_shape[1] + 1).float()[None]  # 1-based, as LoFTR's cumsum of ones
        y_position = torch.arange(1, max_shape[0] + 1).float()[None]
        columns = torch.zeros(d_model, max_shape[1])
        rows = torch.zeros(d_model, max_shape[0])
        columns[0::4] = torch.sin(x_position * div_term)
        columns[1::4] = torch.cos(x_position * div_term)
        rows[2::4] = torch.sin(y_position * div_term)
        rows[3::4] = torch.cos(y_position * div_term)
        self.register_buffer("pe_columns", columns[None, :, None, :], persistent=False)
        self.register_buffer("pe_rows", rows[None, :, :, None], persistent=False)

    @property
    def pe(self) -> torch.Tensor:
        """The full table ``[1, C, max_h, max_w]`` (for inspection; ``forward`` never builds it)."""
        return self.pe_columns + self.pe_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.pe_columns[:, :, :, : x.shape[3]] + self.pe_rows[:, :, : x.shape[2]])


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """``F.elu(x) + 1``, written as ``relu(x) + exp(min(x, 0))``: the same function, but
    ONNX Runtime runs these vectorised ops about 4x faster than its Elu kernel."""
    return F.relu(x) + torch.exp(torch.clamp(x, max=0.0))


class LinearAttention(nn.Module):
    """Linear attention (Katharopoulos et al. 2020) with the ELU+1 feature map."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, merge: torch.Tensor | None = None) -> torch.Tensor:
        """query ``[..., L, D]``, key/value ``[..., S, D]`` -> ``[..., L, D]`` (``...``: batch, heads).

        ``merge`` ``[D, E]``, optional, is a linear map applied to the result (``[..., L, E]``
        out), folded into the small ``[D, D]`` key-value product instead of run on L rows.
        """
        q = elu_plus_one(query)
        k = elu_plus_one(key)
        length = value.shape[-2]
        # Means over the keys, not sums (LoFTR divides the values by the length): float16 range.
        kv = torch.matmul(k.transpose(-2, -1), value / length)  # [..., D, D]
        if merge is not None:
            kv = torch.matmul(kv, merge)
        k_mean = k.mean(dim=-2, keepdim=True).transpose(-2, -1)  # [..., D, 1]
        normaliser = 1.0 / (torch.matmul(q, k_mean) + self.eps / length)  # [..., L, 1]
        return torch.matmul(q, kv) * normaliser


class EncoderLayer(nn.Module):
    """One LoFTR transformer layer: attention, merge, LayerNorm, MLP on [x, message], residual."""

    def __init__(self, d_model: int, d_ffn: int, nhead: int) -> None:
        super().__init__()
        self.nhead = nhead
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.attention = LinearAttention()
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 2 * d_ffn, bias=False), nn.ReLU(inplace=True), nn.Linear(2 * d_ffn, d_model, bias=False)
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        return x.reshape(batch, length, self.nhead, channels // self.nhead).transpose(1, 2)

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """x ``[B, L, C]`` attends to source ``[B, S, C]``."""
        batch, length, channels = x.shape
        if self.nhead == 1:  # no head axis, the merge folded into the attention: fewer graph nodes
            message = self.attention(self.q_proj(x), self.k_proj(source), self.v_proj(source), self.merge.weight.t())
        else:
            message = self.attention(self._heads(self.q_proj(x)), self._heads(self.k_proj(source)), self._heads(self.v_proj(source)))
            message = self.merge(message.transpose(1, 2).reshape(batch, length, channels))
        message = self.norm1(message)
        message = self.norm2(self.mlp(torch.cat([x, message], dim=2)))
        return x + message


class LocalFeatureTransformer(nn.Module):
    """Interleaved self- and cross-attention over the two images' coarse features."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer_names = config.layer_names
        self.layers = nn.ModuleList(EncoderLayer(config.d_model, config.d_ffn, config.nhead) for _ in config.layer_names)
        # The leading self-attention layers see one image each: a sequence can run them once per frame.
        self.per_image_layers = next((i for i, name in enumerate(self.layer_names) if name != "self"), len(self.layer_names))

    def encode(self, feat: torch.Tensor) -> torch.Tensor:
        """The per-image layers (``per_image_layers``) on ``[B, L, C]`` features of any images."""
        for layer in self.layers[: self.per_image_layers]:
            feat = layer(feat, feat)
        return feat

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[B, L, C]`` of both images through the layers from ``start`` on (``start =
        per_image_layers``: features that went through ``encode`` already)."""
        batch = feat0.shape[0]
        for layer, name in zip(self.layers[start:], self.layer_names[start:]):
            if name == "self" and feat0.shape == feat1.shape:
                # Both images in one batch: half the graph nodes, same result.
                both = torch.cat([feat0, feat1], dim=0)
                both = layer(both, both)
                feat0, feat1 = both[:batch], both[batch:]
            else:
                # Sequential update as in LoFTR: in a cross layer image 1 attends to the
                # already-updated features of image 0.
                feat0 = layer(feat0, feat0 if name == "self" else feat1)
                feat1 = layer(feat1, feat1 if name == "self" else feat0)
        return feat0, feat1


@functools.lru_cache(maxsize=None)
def window_offsets(window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dy) of the cells of a ``window x window`` square around its centre, row-major, int64 ``[w*w]``.

    Cached (shared tensors: do not modify them in place)."""
    half = window // 2
    with torch.inference_mode(False):  # cached: must stay usable in training after a call under inference mode
        dy, dx = torch.meshgrid(torch.arange(-half, half + 1), torch.arange(-half, half + 1), indexing="ij")
    return dx.reshape(-1), dy.reshape(-1)


def cell_squares(cells: torch.Tensor, columns: int | torch.Tensor, height: int, width: int, cells_per_coarse: int, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For coarse cells (int ``[...]``, row-major on a grid of ``columns`` columns), the fine
    pixels of the ``(2 radius + 1)^2`` square around each cell's pixel on a ``height x width``
    fine map (``cells_per_coarse`` fine pixels per coarse cell).

    Returns the pixels' row-major indices ``[..., n]`` (int64, clamped to the map) and whether
    each lies on the map (float 1/0). The square is row-major, so its centre is column
    ``n // 2``. Computed from the cells and the map's shape, so an exported graph works at
    any input size (no table of every cell baked in).
    """
    r = cells_per_coarse
    dx, dy = (t.to(cells.device) for t in window_offsets(2 * radius + 1))
    y = torch.div(cells, columns, rounding_mode="trunc")[..., None] * r + dy  # cells >= 0: floor, one ONNX Div
    x = (cells % columns)[..., None] * r + dx
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    return y.clamp(0, height - 1) * width + x.clamp(0, width - 1), inside.to(torch.float32)


class SubPixelRefinement(nn.Module):
    """Learned sub-pixel refinement of coarse matches (optional, ``config.refine_window``).

    The fine features are a 1x1 projection of the backbone stage at the fine stride
    (``coarse_stride / 4`` pixels), kept channels-last ``[B, Hf, Wf, C]`` so that a pixel's
    feature is one contiguous row. For a match of coarse cells (i, j), the fine feature of
    image 0 at cell i's pixel is correlated with a ``window x window`` patch of image 1's
    fine features centred on cell j's pixel; a softmax over the patch and its expectation
    (soft-argmax) give the offset, in model-input pixels, of the match from cell j's pixel.
    Patch pixels off image 1's map score zero (as with zero padding). Only gathers,
    matrix products and a softmax: ONNX/TensorRT friendly, at any grid size.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        channels = config.block_dims[-3]
        self.window = config.refine_window
        self.cells_per_coarse = config.coarse_stride // config.fine_stride
        self.fine_stride = config.fine_stride
        self.proj = nn.Conv2d(channels, channels, kernel_size=1, bias=True)

    def features(self, stage: torch.Tensor) -> torch.Tensor:
        """Backbone stage ``[B, C, Hf, Wf]`` -> fine features, channels-last ``[B, Hf, Wf, C]``."""
        return self.proj(stage).permute(0, 2, 3, 1)

    def correlate(self, fine0: torch.Tensor, fine1: torch.Tensor, cells0: torch.Tensor, cells1: torch.Tensor, radius: int) -> torch.Tensor:
        """Scores ``[B, K, (2 radius + 1)^2]`` of image 0's fine feature at each ``cells0``
        pixel against the square of image 1's fine features around the ``cells1`` pixel
        (row-major; zero off the map). Fine maps channels-last ``[B, Hf, Wf, C]``, cells int ``[B, K]``."""
        batch, height, width, channels = fine0.shape
        r = self.cells_per_coarse
        columns = width // r  # coarse grid columns (the fine map is exactly r times the coarse one)
        cells0, cells1 = cells0.long(), cells1.long()
        centre, _ = cell_squares(cells0, columns, height, width, r, 0)  # [B, K, 1]: each cell's own pixel
        index, inside = cell_squares(cells1, columns, height, width, r, radius)  # [B, K, n]
        start = (torch.arange(batch, device=fine0.device) * (height * width))[:, None]  # first row of each image
        f0 = fine0.reshape(-1, channels)[centre[..., 0] + start]  # [B, K, C]
        f1 = fine1.reshape(-1, channels)[index + start[:, :, None]]  # [B, K, n, C]
        # [B, K, 1, C] x [B, K, C, n]: ONNX Runtime folds the transpose into the batched
        # MatMul, which runs these 1 x n products faster than n x 1 ones.
        scores = torch.matmul(f0[:, :, None] / channels**0.5, f1.transpose(2, 3)).squeeze(2)  # [B, K, n]
        return scores * inside

    @staticmethod
    def soft_argmax(scores: torch.Tensor, window: int, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Expected (x, y) ``[B, K, 2]``, in fine cells from the square's centre, over the
        ``window x window`` part of a square of ``scores`` ``[B, K, side^2]`` (from
        ``correlate``) centred ``shift`` (int ``[B, K, 2]``, x and y; default 0) from its centre."""
        side = math.isqrt(scores.shape[-1])
        dx, dy = (t.to(scores.device) for t in window_offsets(window))
        first = side // 2 - window // 2  # the centred window's first row and column in the square
        if shift is None:
            if window < side:  # the central window x window part (a Slice in a graph)
                square = scores.unflatten(2, (side, side))[:, :, first : first + window, first : first + window]
                scores = square.flatten(2)
        else:
            shift = shift.long().clamp(-first, first)
            picked = (dy + side // 2 + shift[..., 1:]) * side + (dx + side // 2 + shift[..., :1])  # [B, K, w*w]
            scores = torch.gather(scores, 2, picked)
        steps = torch.stack([dx, dy], dim=1).to(scores.dtype)  # [w*w, 2]
        offsets = torch.matmul(F.softmax(scores, dim=2), steps)
        return offsets if shift is None else offsets + shift.to(offsets.dtype)

    def forward(self, fine0: torch.Tensor, fine1: torch.Tensor, cells0: torch.Tensor, cells1: torch.Tensor) -> torch.Tensor:
        """Offsets ``[B, K, 2]`` (x, y pixels) of the matches ``cells0 -> cells1`` (int ``[B, K]``).

        The refined match position in image 1 is ``cell_pixel(cells1) + offset``, in
        model-input pixels; the position in image 0 stays ``cell_pixel(cells0)``.
        """
        scores = self.correlate(fine0, fine1, cells0, cells1, self.window // 2)
        return self.soft_argmax(scores, self.window) * self.fine_stride


def similarity_matrix(feat0: torch.Tensor, feat1: torch.Tensor, temperature: float) -> torch.Tensor:
    """Scaled dot products of transformed features ``[B, L0, L1]`` (the dual-softmax logits)."""
    scale = feat0.shape[-1] ** 0.5
    return torch.matmul(feat0 / scale, (feat1 / scale).transpose(1, 2)) / temperature


def dual_softmax(feat0: torch.Tensor, feat1: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity and dual-softmax confidence matrices ``[B, L0, L1]``."""
    similarity = similarity_matrix(feat0, feat1, temperature)
    confidence = F.softmax(similarity, dim=1) * F.softmax(similarity, dim=2)
    return similarity, confidence


class CoarseLoFTR(nn.Module):
    """Coarse LoFTR: backbone -> position encoding -> transformer -> dual softmax.

    ``forward(image0, image1)`` returns the confidence matrix ``[B, L0, L1]``; the two
    stages are also exposed (``extract_features``, ``match_features``) so that a sequence
    can compute each frame's CNN features once.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNetFPN(config)
        self.pos_encoding = PositionEncodingSine(config.d_model, config.temp_bug_fix)
        self.loftr_coarse = LocalFeatureTransformer(config)
        self.refinement = SubPixelRefinement(config) if config.refine_window else None

    def extract_features(self, image: torch.Tensor, encode: bool = False) -> torch.Tensor:
        """Image ``[B, 1, H, W]`` in [0, 1] -> coarse CNN features ``[B, C, H/s, W/s]``.

        With a learned refinement the map also carries the channels-last fine features
        ``[B, H/f, W/f, Cf]``, reshaped (a free reinterpretation of their memory, not a pixel
        unshuffle) to ``[B, Cf * r * r, H/s, W/s]`` (r = coarse / fine stride) and appended to
        the coarse channels, so one tensor per image still holds everything matching needs
        (``fine_features`` takes them out again).

        ``encode``: the coarse channels hold instead the image's tokens ``[B, L, C]`` after
        the position encoding and the transformer's per-image layers (the part of matching
        that sees this image only, so a sequence computes it once per frame), reinterpreted
        the same way as ``[B, C, H/s, W/s]``. Pass such maps to ``transform(..., encoded=True)``.
        """
        if self.refinement is None:
            coarse, fine = self.backbone(image), None
        else:
            coarse, stage = self.backbone.forward_with_stage(image)
            fine = self.refinement.features(stage)
        if encode:
            tokens = self.loftr_coarse.encode(self.tokens(coarse))
            coarse = tokens.reshape(coarse.shape)
        if fine is None:
            return coarse
        r = self.refinement.cells_per_coarse  # channels spelled out: an export with dynamic sizes declares them
        return torch.cat([coarse, fine.reshape(coarse.shape[0], fine.shape[3] * r * r, *coarse.shape[2:])], dim=1)

    def coarse_part(self, cnn: torch.Tensor) -> torch.Tensor:
        """The coarse channels of an ``extract_features`` map."""
        return cnn if self.refinement is None else cnn[:, : self.config.d_model]

    def refine_matches(self, cnn0: torch.Tensor, cnn1: torch.Tensor, cells0: torch.Tensor, cells1: torch.Tensor) -> torch.Tensor:
        """Sub-pixel offsets ``[B, K, 2]`` (pixels) of matches ``cells0 -> cells1`` from two feature maps."""
        return self.refinement(self.fine_features(cnn0), self.fine_features(cnn1), cells0, cells1)

    def fine_features(self, cnn: torch.Tensor) -> torch.Tensor:
        """The channels-last fine map ``[B, H/f, W/f, Cf]`` carried in an ``extract_features`` map (undoes its reshape)."""
        if self.refinement is None:
            raise ValueError(f"model {self.config.name!r} has no learned refinement (refine_window is 0)")
        r, channels = self.refinement.cells_per_coarse, self.refinement.proj.out_channels
        fine = cnn[:, self.config.d_model : self.config.d_model + r * r * channels]  # a map may carry more after (the pixels)
        return fine.reshape(cnn.shape[0], cnn.shape[2] * r, cnn.shape[3] * r, channels)

    def tokens(self, coarse: torch.Tensor) -> torch.Tensor:
        """Coarse map ``[B, C, H/s, W/s]`` -> position-encoded tokens ``[B, L, C]``, row-major cells."""
        return self.pos_encoding(coarse).flatten(2).transpose(1, 2)

    def transform(self, cnn0: torch.Tensor, cnn1: torch.Tensor, encoded: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature maps of both images -> transformed features ``[B, L, C]``.

        ``encoded``: the maps come from ``extract_features(..., encode=True)``.
        """
        coarse0, coarse1 = self.coarse_part(cnn0), self.coarse_part(cnn1)
        if encoded:
            flat = (coarse0.shape[0], -1, self.config.d_model)
            return self.loftr_coarse(coarse0.reshape(flat), coarse1.reshape(flat), start=self.loftr_coarse.per_image_layers)
        return self.loftr_coarse(self.tokens(coarse0), self.tokens(coarse1))

    def similarity(self, cnn0: torch.Tensor, cnn1: torch.Tensor) -> torch.Tensor:
        """Coarse CNN maps of both images -> dual-softmax logits ``[B, L0, L1]``."""
        return similarity_matrix(*self.transform(cnn0, cnn1), self.config.temperature)

    def match_features(self, cnn0: torch.Tensor, cnn1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse CNN maps of both images -> (similarity, confidence) ``[B, L0, L1]``."""
        return dual_softmax(*self.transform(cnn0, cnn1), self.config.temperature)

    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> torch.Tensor:
        batch = image0.shape[0]
        if image0.shape == image1.shape:  # one CNN pass over both images
            cnn = self.extract_features(torch.cat([image0, image1], dim=0))
            cnn0, cnn1 = cnn[:batch], cnn[batch:]
        else:
            cnn0, cnn1 = self.extract_features(image0), self.extract_features(image1)
        return self.match_features(cnn0, cnn1)[1]
