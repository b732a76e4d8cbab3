"""PyTorch backend: runs a checkpoint directly (development, GPU experiments).

Imports torch and ``coarse_loftr_train`` only when constructed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError
from .base import OUTPUT_NAMES, RawMatches


class TorchBackend:
    """A ``.pt``/``.ckpt`` checkpoint with the same in-graph extraction as the exported model."""

    name = "torch"

    def __init__(
        self,
        model: str | Path,
        config: str | None = None,
        input_size: tuple[int, int] | None = None,
        device: str | None = None,
    ) -> None:
        try:
            import torch

            from coarse_loftr_train.checkpoint import load_model, stored_match_score_scale
            from coarse_loftr_train.export import ExportableMatcher
        except ImportError as error:
            raise BackendUnavailableError(
                f"the torch backend needs PyTorch ({error.name} is missing); install it with `pip install torch==2.13.0`"
            ) from None
        self._torch = torch
        self.model_path = Path(model)
        network = load_model(self.model_path, config)
        if input_size is not None:
            network.config = network.config.with_input_size(*input_size)
        self.input_size = (network.config.input_width, network.config.input_height)
        self.stride = network.config.coarse_stride
        self.model_name = self.model_path.name
        scale = stored_match_score_scale(self.model_path)
        self.metadata = {} if scale is None else {"match_score_scale": repr(scale)}  # as the exported graphs'
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.wrapper = ExportableMatcher(network).to(self.device).eval()
        rows, columns = network.pos_encoding.max_shape
        self.max_input_size = (columns * self.stride, rows * self.stride)

    def set_input_size(self, size: tuple[int, int]) -> None:
        """Run at ``size`` (width, height) pixels from now on (the network takes any size
        ``check_input_size`` accepts); InputSizeError (one line) otherwise."""
        from ..preprocess import check_input_size

        self.input_size = check_input_size(size, self.stride, self.max_input_size)

    def run(self, image0: np.ndarray, image1: np.ndarray) -> RawMatches:
        torch = self._torch
        with torch.inference_mode():
            outputs = self.wrapper(torch.from_numpy(image0).to(self.device), torch.from_numpy(image1).to(self.device))
        return RawMatches.from_outputs({name: t.cpu().numpy() for name, t in zip(OUTPUT_NAMES, outputs)})
