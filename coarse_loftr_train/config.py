"""Model configurations as data.

A configuration fully describes the coarse LoFTR network; the two shipped ones are
``TEACHER`` (the original LoFTR outdoor model reduced to its coarse level) and
``STUDENT`` (the reduced model of Kolodiazhnyi 2022, "Local Feature Matching with
Transformers for low-end devices").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a coarse LoFTR network.

    Attributes:
        name: short name, stored in exported models.
        coarse_stride: input pixels per coarse cell (8 or 16).
        fine_stride: input pixels per fine-level cell of the FPN (2 or 4); only a
            refinement stage uses the fine features.
        initial_dim: channels of the stem convolution.
        block_dims: channels of the ResNet stages (3 stages for stride 8, 4 for 16).
        d_model: transformer width (equals the last block dim).
        d_ffn: the feed-forward block maps [x, message] (2 * d_model) through a hidden
            layer of 2 * d_ffn channels back to d_model.
        nhead: attention heads.
        layer_names: transformer layers in order, each ``"self"`` or ``"cross"``.
        temperature: dual-softmax temperature.
        temp_bug_fix: position-encoding variant (see ``PositionEncodingSine``); False for
            the released LoFTR outdoor and reduced-student weights.
        input_width, input_height: default model input size in pixels.
        refine_window: side, in fine-level cells, of the window of image 1 searched by the
            learned sub-pixel refinement (odd, e.g. 5); 0 (the default, and the released
            models) means no refinement: a match sits at its coarse cell's pixel.
        stage_blocks: ResNet basic blocks per stage (2 each in LoFTR). The first stage
            keeps the stem's resolution and may have 0 blocks when ``initial_dim ==
            block_dims[0]``: the fast student drops it, skipping the most expensive
            convolutions (8 channels at half the input resolution).
    """

    name: str
    coarse_stride: int
    fine_stride: int
    initial_dim: int
    block_dims: tuple[int, ...]
    d_model: int
    d_ffn: int
    nhead: int
    layer_names: tuple[str, ...]
    temperature: float = 0.1
    temp_bug_fix: bool = False
    input_width: int = 640
    input_height: int = 480
    refine_window: int = 0
    stage_blocks: tuple[int, ...] | None = None  # None: 2 per stage, as in LoFTR

    def __post_init__(self) -> None:
        expected_stages = {8: 3, 16: 4}.get(self.coarse_stride)
        if expected_stages is None:
            raise ValueError(f"coarse_stride must be 8 or 16, got {self.coarse_stride}")
        if len(self.block_dims) != expected_stages:
            raise ValueError(
                f"coarse_stride {self.coarse_stride} needs {expected_stages} block dims, "
                f"got {len(self.block_dims)}"
            )
        if self.stage_blocks is None:
            object.__setattr__(self, "stage_blocks", (2,) * len(self.block_dims))
        if len(self.stage_blocks) != len(self.block_dims):
            raise ValueError(f"stage_blocks {self.stage_blocks} needs one entry per block dim {self.block_dims}")
        if any(n < 1 for n in self.stage_blocks[1:]) or self.stage_blocks[0] < 0:
            raise ValueError(f"stage_blocks {self.stage_blocks}: only the first stage may have 0 blocks")
        if self.stage_blocks[0] == 0 and self.initial_dim != self.block_dims[0]:
            raise ValueError("a first stage of 0 blocks needs initial_dim == block_dims[0]")
        if self.block_dims[-1] != self.d_model:
            raise ValueError("the last block dim must equal d_model")
        if self.d_model % self.nhead:
            raise ValueError("d_model must be divisible by nhead")
        if any(n not in ("self", "cross") for n in self.layer_names):
            raise ValueError("layer_names may only contain 'self' and 'cross'")
        if self.refine_window < 0 or (self.refine_window and self.refine_window % 2 == 0):
            raise ValueError(f"refine_window must be 0 or odd, got {self.refine_window}")
        for size in (self.input_width, self.input_height):
            if size % self.coarse_stride:
                raise ValueError(
                    f"input size {self.input_width}x{self.input_height} must be a multiple "
                    f"of the coarse stride {self.coarse_stride}"
                )

    def with_input_size(self, width: int, height: int) -> "ModelConfig":
        """Return a copy with another model input size (pixels)."""
        return dataclasses.replace(self, input_width=width, input_height=height)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Inverse of ``to_dict`` (lists become tuples; keys added later take defaults)."""
        tuples = {k: tuple(v) for k, v in values.items() if isinstance(v, list)}
        return cls(**{**values, **tuples})


TEACHER = ModelConfig(
    name="teacher",
    coarse_stride=8,
    fine_stride=2,
    initial_dim=128,
    block_dims=(128, 196, 256),
    d_model=256,
    d_ffn=256,
    nhead=8,
    layer_names=("self", "cross") * 4,
)

STUDENT = ModelConfig(
    name="student",
    coarse_stride=16,
    fine_stride=4,
    initial_dim=8,
    block_dims=(8, 16, 32, 32),
    d_model=32,
    d_ffn=32,
    nhead=1,
    layer_names=("self", "cross") * 2,
)

CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (TEACHER, STUDENT)}


def get_config(name: str) -> ModelConfig:
    """Look up a shipped configuration by name (``student`` or ``teacher``)."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}") from None
