"""The coarse level of LoFTR (Sun et al., CVPR 2021) in plain PyTorch.

Only matmul, reshape, sum and standard layers are used (no einsum, no einops), so the
network exports to ONNX with static shapes and builds in TensorRT 8.5+.

Tensor conventions: images are ``[B, 1, H, W]`` float32 grayscale in [0, 1]; coarse
features are ``[B, L, C]`` with ``L = (H / stride) * (W / stride)`` cells in row-major
order (cell index ``i = row * (W / stride) + col``).
"""

from __future__ import annotations

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
    """2-D sinusoidal position encoding of LoFTR.

    ``temp_bug_fix=False`` reproduces the frequency term of the original release
    (``-log(10000) / d_model // 2``, which floors to -1), used by the released LoFTR
    outdoor and reduced-student weights; ``True`` is the corrected formula.
    """

    def __init__(self, d_model: int, temp_bug_fix: bool = False, max_shape: tuple[int, int] = (256, 256)) -> None:
        super().__init__()
        pe = torch.zeros((d_model, *max_shape))
        y_position = torch.ones(max_shape).cumsum(0).float().unsqueeze(0)
        x_position = torch.ones(max_shape).cumsum(1).float().unsqueeze(0)
        exponent = -math.log(10000.0) / (d_model // 2) if temp_bug_fix else -math.log(10000.0) / d_model // 2
        div_term = torch.exp(torch.arange(0, d_model // 2, 2).float() * exponent)
        div_term = div_term[:, None, None]
        pe[0::4, :, :] = torch.sin(x_position * div_term)
        pe[1::4, :, :] = torch.cos(x_position * div_term)
        pe[2::4, :, :] = torch.sin(y_position * div_term)
        pe[3::4, :, :] = torch.cos(y_position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, :, : x.shape[2], : x.shape[3]]


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """``F.elu(x) + 1``, written as ``relu(x) + exp(min(x, 0))``: the same function, but
    ONNX Runtime runs these vectorised ops about 4x faster than its Elu kernel."""
    return F.relu(x) + torch.exp(torch.clamp(x, max=0.0))


class LinearAttention(nn.Module):
    """Linear attention (Katharopoulos et al. 2020) with the ELU+1 feature map."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query ``[..., L, D]``, key/value ``[..., S, D]`` -> ``[..., L, D]`` (``...``: batch, heads)."""
        q = elu_plus_one(query)
        k = elu_plus_one(key)
        length = value.shape[-2]
        v = value / length
        kv = torch.matmul(k.transpose(-2, -1), v)  # [..., D, D]
        normaliser = 1.0 / (torch.matmul(q, k.sum(dim=-2, keepdim=True).transpose(-2, -1)) + self.eps)  # [..., L, 1]
        return torch.matmul(q, kv) * normaliser * length


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
        if self.nhead == 1:  # no head axis: fewer reshapes and transposes in the exported graph
            message = self.attention(self.q_proj(x), self.k_proj(source), self.v_proj(source))
        else:
            message = self.attention(self._heads(self.q_proj(x)), self._heads(self.k_proj(source)), self._heads(self.v_proj(source)))
            message = message.transpose(1, 2).reshape(batch, length, channels)
        message = self.norm1(self.merge(message))
        message = self.norm2(self.mlp(torch.cat([x, message], dim=2)))
        return x + message


class LocalFeatureTransformer(nn.Module):
    """Interleaved self- and cross-attention over the two images' coarse features."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer_names = config.layer_names
        self.layers = nn.ModuleList(EncoderLayer(config.d_model, config.d_ffn, config.nhead) for _ in config.layer_names)

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = feat0.shape[0]
        for layer, name in zip(self.layers, self.layer_names):
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


def window_offsets(window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dy) of the cells of a ``window x window`` square around its centre, row-major, int64 ``[w*w]``."""
    half = window // 2
    dy, dx = torch.meshgrid(torch.arange(-half, half + 1), torch.arange(-half, half + 1), indexing="ij")
    return dx.reshape(-1), dy.reshape(-1)


class SubPixelRefinement(nn.Module):
    """Learned sub-pixel refinement of coarse matches (optional, ``config.refine_window``).

    The fine features are a 1x1 projection of the backbone stage at the fine stride
    (``coarse_stride / 4`` pixels). For a match of coarse cells (i, j), the fine feature
    of image 0 at cell i's pixel is correlated with a ``window x window`` patch of image
    1's fine features centred on cell j's pixel; a softmax over the patch and its
    expectation (soft-argmax) give the offset, in model-input pixels, of the match from
    cell j's pixel. Only gathers, multiplies, sums and a softmax: ONNX/TensorRT friendly
    with static shapes.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        channels = config.block_dims[-3]
        self.window = config.refine_window
        self.cells_per_coarse = config.coarse_stride // config.fine_stride
        self.fine_stride = config.fine_stride
        self.proj = nn.Conv2d(channels, channels, kernel_size=1, bias=True)
        dx, dy = window_offsets(self.window)
        self.register_buffer("window_dx", dx, persistent=False)
        self.register_buffer("window_dy", dy, persistent=False)

    def features(self, stage: torch.Tensor) -> torch.Tensor:
        """Backbone stage ``[B, C, H/f, W/f]`` -> fine features of the same shape."""
        return self.proj(stage)

    def forward(
        self,
        fine0: torch.Tensor,
        fine1: torch.Tensor,
        cells0: torch.Tensor,
        cells1: torch.Tensor,
        shift: torch.Tensor | None = None,
        window: int | None = None,
    ) -> torch.Tensor:
        """Offsets ``[B, K, 2]`` (x, y pixels) of the matches ``cells0 -> cells1`` (int ``[B, K]``).

        The refined match position in image 1 is ``cell_pixel(cells1) + offset``, in
        model-input pixels; the position in image 0 stays ``cell_pixel(cells0)``. Window
        pixels off image 1's map score zero (as with zero padding). ``shift`` (int
        ``[B, K, 2]``, x and y in fine cells) moves the window's centre, e.g. onto a first
        estimate; the offset stays relative to the cell's pixel.
        """
        batch, channels, height, width = fine0.shape
        r = self.cells_per_coarse
        columns = width // r
        cells0 = cells0.long()
        cells1 = cells1.long()
        # Image 0: the fine feature at each matched cell's pixel, [B, K, C].
        index0 = (cells0 // columns) * r * width + (cells0 % columns) * r  # [B, K]
        f0 = torch.gather(fine0.reshape(batch, channels, -1), 2, index0[:, None, :].expand(-1, channels, -1)).transpose(1, 2)
        # Image 1: a window around each matched cell's pixel, clamped to the map; rows of
        # a pixel-major copy of the map, so the gather copies whole feature vectors.
        if window is None or window == self.window:
            window, window_dx, window_dy = self.window, self.window_dx, self.window_dy
        else:  # a smaller search, e.g. around a first estimate (constants in an exported graph)
            window_dx, window_dy = (offsets.to(cells1.device) for offsets in window_offsets(window))
        centre_y, centre_x = cells1 // columns * r, cells1 % columns * r  # [B, K]
        if shift is not None:
            centre_x, centre_y = centre_x + shift[:, :, 0].long(), centre_y + shift[:, :, 1].long()
        y = centre_y[:, :, None] + window_dy[None, None, :]  # [B, K, w*w]
        x = centre_x[:, :, None] + window_dx[None, None, :]
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        pixels = height * width
        index1 = y.clamp(0, height - 1) * width + x.clamp(0, width - 1)
        index1 = index1 + (torch.arange(batch, device=index1.device) * pixels)[:, None, None]
        rows1 = fine1.reshape(batch, channels, pixels).transpose(1, 2).reshape(batch * pixels, channels)
        f1 = rows1[index1.reshape(-1)].reshape(batch, index1.shape[1], window * window, channels)
        scores = (f1 * f0[:, :, None, :]).sum(dim=3) / channels**0.5 * inside.to(f1.dtype)  # [B, K, w*w]
        weights = F.softmax(scores, dim=2)
        dx = (weights * window_dx.to(weights.dtype)).sum(dim=2)
        dy = (weights * window_dy.to(weights.dtype)).sum(dim=2)
        offsets = torch.stack([dx, dy], dim=2)
        if shift is not None:
            offsets = offsets + shift.to(offsets.dtype)
        return offsets * self.fine_stride


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

    def extract_features(self, image: torch.Tensor) -> torch.Tensor:
        """Image ``[B, 1, H, W]`` in [0, 1] -> coarse CNN features ``[B, C, H/s, W/s]``.

        With a learned refinement the map also carries the fine features ``[B, Cf, H/f,
        W/f]``, reshaped (a free reinterpretation of their memory, not a pixel unshuffle)
        to ``[B, Cf * r * r, H/s, W/s]`` (r = coarse / fine stride) and appended to the
        coarse channels, so one tensor per image still holds everything matching needs.
        """
        if self.refinement is None:
            return self.backbone(image)
        coarse, stage = self.backbone.forward_with_stage(image)
        fine = self.refinement.features(stage)
        return torch.cat([coarse, fine.reshape(coarse.shape[0], -1, *coarse.shape[2:])], dim=1)

    def coarse_part(self, cnn: torch.Tensor) -> torch.Tensor:
        """The coarse channels of an ``extract_features`` map."""
        return cnn if self.refinement is None else cnn[:, : self.config.d_model]

    def refine_matches(self, cnn0: torch.Tensor, cnn1: torch.Tensor, cells0: torch.Tensor, cells1: torch.Tensor) -> torch.Tensor:
        """Sub-pixel offsets ``[B, K, 2]`` (pixels) of matches ``cells0 -> cells1`` from two feature maps."""
        return self.refinement(self.fine_features(cnn0), self.fine_features(cnn1), cells0, cells1)

    def fine_features(self, cnn: torch.Tensor) -> torch.Tensor:
        """The fine map ``[B, Cf, H/f, W/f]`` carried in an ``extract_features`` map (undoes its reshape)."""
        if self.refinement is None:
            raise ValueError(f"model {self.config.name!r} has no learned refinement (refine_window is 0)")
        r = self.refinement.cells_per_coarse
        return cnn[:, self.config.d_model :].reshape(cnn.shape[0], -1, cnn.shape[2] * r, cnn.shape[3] * r)

    def transform(self, cnn0: torch.Tensor, cnn1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse CNN maps of both images -> transformed features ``[B, L, C]``."""
        cnn0, cnn1 = self.coarse_part(cnn0), self.coarse_part(cnn1)
        feat0 = self.pos_encoding(cnn0).flatten(2).transpose(1, 2)
        feat1 = self.pos_encoding(cnn1).flatten(2).transpose(1, 2)
        return self.loftr_coarse(feat0, feat1)

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
