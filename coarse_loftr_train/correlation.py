"""The fine stage inside the exported graphs: each match placed by correlating image patches.

After the coarse match and the learned refinement a match is right to a few model-input pixels.
This stage compares the ``patch x patch`` square of image 0 about the match's point with the
squares of image 1 at every whole-pixel shift within ``search`` pixels of the match's point
there, by zero-mean normalised cross-correlation (ZNCC: blind to a change of brightness and
contrast), and moves the point to the best shift plus a sub-pixel step. The peak's ZNCC is the
match's **fine score**: near 1 where the patches agree, low where the position cannot be
trusted (a wrong match, an occlusion, a flat or repetitive patch). A peak on the search border
(the true shift may lie beyond), and a match whose squares would cross the image's edge, score -1.
With more than one spacing (``CorrelationConfig.scales``) image 1 is also read every 1.25 pixels
(say), as a scene that grows ahead of a car needs, and each match keeps its best spacing and shift.

It does what the Lucas-Kanade polish does after the graph, but inside it: a fixed amount of work
per match (two small gathers from the images, then products with constant 0/1 matrices and one
batched product per match; no pass over the whole image), so it runs on ONNX Runtime, TensorRT
and torch alike, on the GPU where the graph runs there. ONNX Runtime's cost here is per op, not
per multiply-add: the code prefers a few large products to many small slices and sums.

Coordinates: model-input pixels (x right, y down, pixel centres at integers). Image 0's square
is centred on the match's point rounded to a whole pixel, which becomes the returned point;
image 1's search starts at its point moved by the same rounding (locally a translation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .model import window_offsets


@dataclass(frozen=True)
class CorrelationConfig:
    """Settings of the fine stage baked into an exported graph.

    Attributes:
        patch: side of the compared squares, model-input pixels (odd).
        search: largest shift tried each way, pixels; ``(2 search + 1)^2`` shifts.
        min_score: the fine score below which a match keeps the position it came with (the
            runtime drops such matches, ``Matcher(fine_stage=...)``; this only sets where they
            stay in the graph's output).
        rows: the stage places the first ``rows`` matches only (the graph's rows are sorted by
            confidence), the others keep their positions and score -1; 0: all of them.
        subpixel: ``gradient``: one Gauss-Newton step of the normalised squares from the best
            whole-pixel shift, with the mean of both images' gradients (efficient second-order
            minimisation, Benhimane and Malis 2004); ``parabola``: the vertex of a parabola
            through the scores beside the peak, each axis on its own.
        scales: the spacings, in image-1 pixels per image-0 pixel, at which image 1 is read for
            the search; each match keeps the best (scale, shift). ``(1.0,)``: image 1 as it is;
            ``(1.0, 1.25)`` also follows a scene that grows by about 1.25x (forward motion),
            at about twice the stage's cost. Other spacings than 1 are read bilinearly.
    """

    patch: int = 7
    search: int = 2
    min_score: float = 0.7
    subpixel: str = "gradient"
    rows: int = 0
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.patch < 3 or self.patch % 2 == 0:
            raise ValueError(f"the correlation patch must be odd and at least 3 pixels, got {self.patch}")
        if self.search < 1:
            raise ValueError(f"the correlation search must be at least 1 pixel, got {self.search}")
        if self.rows < 0:
            raise ValueError(f"rows must be 0 (all) or positive, got {self.rows}")
        if self.subpixel not in ("gradient", "parabola"):
            raise ValueError(f"subpixel must be gradient or parabola, got {self.subpixel!r}")
        if not self.scales or any(not 0.5 <= scale <= 2.0 for scale in self.scales):
            raise ValueError(f"the correlation scales must be between 0.5 and 2, got {self.scales}")


class CorrelationRefinement(nn.Module):
    """Images ``[1, H, W]`` and matched points ``[1, K, 2]`` -> (points0, points1 ``[1, K, 2]``, fine score ``[1, K]``)."""

    def __init__(self, config: CorrelationConfig = CorrelationConfig()) -> None:
        super().__init__()
        self.config = config
        side = 2 * config.search + 1
        ring_x, ring_y = window_offsets(config.patch + 2)  # a square with a one-pixel ring (for the gradients)
        self.register_buffer("ring_x", ring_x[None, None], persistent=False)  # [1, 1, (P+2)^2]
        self.register_buffer("ring_y", ring_y[None, None], persistent=False)
        span = config.patch + 2 * config.search  # side of the searched area (every pixel a shifted square reaches)
        area = span + 2  # with a one-pixel ring, for the gradients at the best shift
        # shifts[c, sx * P + j] = 1 where area column c is column j of the square at shift sx;
        # box[(r, c), (sy, sx)] = 1 where area pixel (r, c) lies in the square at shift (sx, sy)
        c, sx, j = torch.meshgrid(torch.arange(span), torch.arange(side), torch.arange(config.patch), indexing="ij")
        self.register_buffer("shifts", (c == sx + j).float().reshape(span, side * config.patch), persistent=False)
        in_band = (torch.arange(span)[:, None] >= torch.arange(side)) & (torch.arange(span)[:, None] < torch.arange(side) + config.patch)
        box = in_band[:, None, :, None] & in_band[None, :, None, :]  # [r, c, sy, sx]
        self.register_buffer("box", box.float().reshape(span * span, side * side), persistent=False)
        # diagonals[(r, sx, i), (sy, sx')] = 1 where area row r meets template row i at shift sy
        # (r = sy + i), for the same horizontal shift (sx = sx')
        r, sx, i, sy, sx_ = torch.meshgrid(*(torch.arange(n) for n in (span, side, config.patch, side, side)), indexing="ij")
        diagonals = (r == sy + i) & (sx == sx_)
        self.register_buffer("diagonals", diagonals.float().reshape(span * side * config.patch, side * side), persistent=False)
        shift_x, shift_y = window_offsets(side)
        self.register_buffer("steps", torch.stack([shift_x, shift_y], dim=1).float(), persistent=False)  # [S, 2]
        self.register_buffer("gradient_operator", _gradient_operator(config.patch), persistent=False)
        self.register_buffer("spacings", torch.tensor(config.scales, dtype=torch.float32), persistent=False)  # [n]
        self.reach = max(_reach(area, scale) for scale in config.scales)  # image 1 is read once, this far about each match
        for i, scale in enumerate(config.scales):
            self.register_buffer(f"resample{i}", _interpolation_matrix(area, scale, self.reach), persistent=False)

    @staticmethod
    def _squares(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor, side: int) -> torch.Tensor:
        """The ``side x side`` squares of ``image`` ``[1, H, W]`` centred on the whole pixels ``x``,
        ``y`` (int ``[1, K, 1]``), ``[1, K, side, side]``: one gather, a centre's index plus one
        small offset table. A centre too near the border is moved in until its square fits
        (``forward`` gives such matches no score)."""
        margin = side // 2
        height, width = image.shape[1], image.shape[2]
        dx, dy = (t.to(x.device) for t in window_offsets(side))
        offsets = (dy * width + dx).reshape(1, 1, -1)  # [1, 1, side^2], row-major
        centre = y.clamp(margin, height - 1 - margin) * width + x.clamp(margin, width - 1 - margin)  # [1, K, 1]
        # torch.gather exports as GatherElements: about 3x faster than Gather's element copies in ONNX Runtime
        return torch.gather(image.reshape(-1), 0, (centre + offsets).reshape(-1)).reshape(*x.shape[:2], side, side)

    def forward(self, image0: torch.Tensor, image1: torch.Tensor, points0: torch.Tensor, points1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows = self.config.rows
        if not rows or points0.shape[1] <= rows:
            return self.place(image0, image1, points0, points1)
        head0, head1, score = self.place(image0, image1, points0[:, :rows], points1[:, :rows])
        tail = torch.full_like(points0[:, rows:, 0], -1.0)
        return torch.cat([head0, points0[:, rows:]], 1), torch.cat([head1, points1[:, rows:]], 1), torch.cat([score, tail], 1)

    def place(self, image0: torch.Tensor, image1: torch.Tensor, points0: torch.Tensor, points1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The stage on every given match (``forward`` without the ``rows`` limit)."""
        config = self.config
        patch, side = config.patch, 2 * config.search + 1
        ring, area = patch + 2, patch + 2 * config.search + 2
        batch, count = points0.shape[:2]
        centre0 = torch.round(points0)
        start1 = torch.round(points1 + (centre0 - points0))
        x0, y0 = centre0[..., :1].long(), centre0[..., 1:].long()  # [1, K, 1]
        x1, y1 = start1[..., :1].long(), start1[..., 1:].long()
        square0 = self._squares(image0, x0, y0, ring)  # [1, K, P+2, P+2]
        # image 1's searched area at each spacing, all from one gather of the whole-pixel square
        # they lie in: spacing 1 is its centre, another spacing a product with a constant
        # interpolation matrix on each side (the centres are whole pixels, so every match's
        # samples fall at the same fractions of a pixel)
        scales = config.scales
        window1 = self._squares(image1, x1, y1, 2 * self.reach + 1)  # [1, K, W, W]
        start = self.reach - area // 2
        area1 = torch.stack(
            [
                window1[..., start : start + area, start : start + area]
                if scale == 1.0
                else torch.matmul(torch.matmul(getattr(self, f"resample{i}"), window1), getattr(self, f"resample{i}").transpose(0, 1))
                for i, scale in enumerate(scales)
            ],
            dim=2,
        )  # [1, K, n, A+2, A+2]
        inner = area1[..., 1:-1, 1:-1]  # [1, K, n, A, A]: every pixel a shifted square can reach
        template = square0[..., 1:-1, 1:-1]
        template = template - template.mean(dim=(2, 3), keepdim=True)  # [1, K, P, P]
        span = area - 2
        # ZNCC at every shift from products with constant 0/1 matrices (a few large ops instead of
        # many small ones: ONNX Runtime's cost here is per op). Each area row cut into its
        # ``side`` windows of P pixels (one product), times every template row at once (one
        # batched product per match, for all its spacings), summed along the diagonals (area
        # row sy + i with template row i); each window's sum and sum of squares, for the
        # normalisation, by one product with the box matrix.
        columns = torch.matmul(inner, self.shifts)  # [1, K, n, A, sx * P + j]
        products = torch.matmul(columns.reshape(batch, count, -1, patch), template.transpose(2, 3))  # [1, K, (n, r, sx), i]
        numerator = torch.matmul(products.reshape(batch, count, len(scales), -1), self.diagonals)  # [1, K, n, (sy, sx)]
        flat = inner.reshape(batch, count, len(scales), span * span)
        window_sum, window_squares = torch.matmul(flat, self.box), torch.matmul(flat * flat, self.box)  # [1, K, n, S]
        pixels = float(patch * patch)
        window_var = (window_squares - window_sum * window_sum / pixels).clamp_min(0.0)
        template_var = (template * template).sum(dim=(2, 3))[..., None, None]  # [1, K, 1, 1]
        zncc = numerator * torch.rsqrt(window_var * template_var + 1e-6)
        zncc = zncc.reshape(batch, count, -1)  # per match, the scores of every (spacing, shift): [1, K, n S]
        best_any = torch.argmax(zncc, dim=2, keepdim=True)  # [1, K, 1]
        peak = torch.gather(zncc, 2, best_any)[..., 0]
        which = torch.div(best_any, side * side, rounding_mode="trunc")  # the spacing's index
        best = best_any - which * (side * side)  # the shift's index
        spacing = self.spacings[which[..., 0]][..., None]  # [1, K, 1]
        row = torch.div(best, side, rounding_mode="trunc")
        column = best - row * side
        on_border = (row == 0) | (row == side - 1) | (column == 0) | (column == side - 1)
        if config.subpixel == "gradient":
            # image 1's square at the best shift, with its ring, read from the area
            index = which * (area * area) + (row + self.ring_y + ring // 2) * area + (column + self.ring_x + ring // 2)  # [1, K, (P+2)^2]
            per_match = area1.reshape(batch, count, -1)
            square1 = torch.gather(per_match, 2, index).reshape(batch, count, ring, ring)
            offset = _gauss_newton(square0, square1, self.gradient_operator)
        else:
            row, column = row.clamp(1, side - 2), column.clamp(1, side - 2)
            at = which * (side * side) + row * side + column
            around = torch.gather(zncc, 2, torch.cat([at - 1, at + 1, at - side, at + side, at], dim=2))  # left, right, up, down, centre
            left, right, up, down, centre = around.unbind(dim=2)
            offset = torch.stack([_parabola(left, centre, right), _parabola(up, centre, down)], dim=2)
        step = self.steps[best[..., 0]]  # [1, K, 2]
        moved = start1 + spacing * (step + offset)
        height, width = image0.shape[1], image0.shape[2]
        margin0, margin1 = ring // 2, self.reach
        near_edge = (x0 < margin0) | (x0 > width - 1 - margin0) | (y0 < margin0) | (y0 > height - 1 - margin0)
        near_edge = near_edge | (x1 < margin1) | (x1 > width - 1 - margin1) | (y1 < margin1) | (y1 > height - 1 - margin1)
        score = torch.where((on_border | near_edge)[..., 0], torch.full_like(peak, -1.0), peak)
        good = (score >= config.min_score)[..., None]
        return torch.where(good, centre0, points0), torch.where(good, moved, points1), score


def _reach(side: int, spacing: float) -> int:
    """Half the side of the whole-pixel square that holds ``side`` samples ``spacing`` apart
    about its centre, with the pixel after the last (for the bilinear weights)."""
    half = side // 2
    return half if spacing == 1.0 else math.ceil(spacing * half) + 1


def _interpolation_matrix(side: int, spacing: float, reach: int) -> torch.Tensor:
    """``[side, 2 reach + 1]``: row k reads the point ``spacing * (k - side // 2)`` pixels from the
    centre of a line of ``2 reach + 1`` pixels by linear interpolation."""
    matrix = torch.zeros(side, 2 * reach + 1)
    for k in range(side):
        position = spacing * (k - side // 2) + reach
        left = math.floor(position)
        fraction = position - left
        matrix[k, left] += 1.0 - fraction
        if fraction > 0:
            matrix[k, left + 1] += fraction
    return matrix


def _gradient_operator(patch: int) -> torch.Tensor:
    """``[(P+2)^2, 3 P^2]``: a ``(P+2) x (P+2)`` square, flattened row-major, times this gives its
    inner ``P x P`` pixels less their mean, then their x and y central differences (half the
    difference of the neighbours), each flattened row-major: all linear in the pixels."""
    ring = patch + 2
    y, x = torch.meshgrid(torch.arange(1, ring - 1), torch.arange(1, ring - 1), indexing="ij")
    at = (y * ring + x).reshape(-1)  # the inner pixels' indices in the square
    operator = torch.zeros(ring * ring, 3, patch * patch)
    inner = torch.arange(patch * patch)
    operator[at, 0, inner] = 1.0
    operator[at, 0, :] -= 1.0 / (patch * patch)
    operator[at + 1, 1, inner] += 0.5
    operator[at - 1, 1, inner] -= 0.5
    operator[at + ring, 2, inner] += 0.5
    operator[at - ring, 2, inner] -= 0.5
    return operator.reshape(ring * ring, 3 * patch * patch)


def _gauss_newton(square0: torch.Tensor, square1: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
    """The shift ``[1, K, 2]`` (within +-1 pixel) that moves image 1's square ``[1, K, P+2, P+2]``
    onto image 0's: one Gauss-Newton step on the inner ``P x P`` pixels, both zero-mean and of
    unit spread, with the mean of the two squares' central-difference gradients
    (``operator``: ``_gradient_operator``)."""
    pixels = operator.shape[1] // 3
    both = torch.matmul(torch.stack([square0, square1]).flatten(3), operator)  # [2, 1, K, 3 P^2]
    centred = both[..., :pixels]
    spread = torch.sqrt((centred * centred).mean(dim=3, keepdim=True) + 1e-6)
    normal = both / spread
    residual = (normal[0] - normal[1])[..., :pixels]
    gradients = 0.5 * (normal[0] + normal[1])
    gx, gy = gradients[..., pixels : 2 * pixels], gradients[..., 2 * pixels :]
    a, b, c = (gx * gx).sum(2), (gx * gy).sum(2), (gy * gy).sum(2)
    u, v = (gx * residual).sum(2), (gy * residual).sum(2)
    determinant = a * c - b * b
    solvable = determinant > 1e-6 * (a + c) ** 2 + 1e-9
    safe = torch.where(solvable, determinant, torch.ones_like(determinant))
    dx = torch.where(solvable, (c * u - b * v) / safe, torch.zeros_like(u))
    dy = torch.where(solvable, (a * v - b * u) / safe, torch.zeros_like(v))
    return torch.stack([dx, dy], dim=2).clamp(-1.0, 1.0)


def _parabola(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offset, within +-0.5, of the vertex of the parabola through three equally spaced
    values whose middle one is the largest (0 where they are flat)."""
    curvature = minus - 2.0 * centre + plus
    bent = curvature < -1e-6
    offset = 0.5 * (minus - plus) / torch.where(bent, curvature, torch.full_like(curvature, -1.0))
    return torch.where(bent, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))
