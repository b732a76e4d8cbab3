"""Training, checkpoints and export for the coarse LoFTR matcher (needs PyTorch)."""

from .config import STUDENT, TEACHER, ModelConfig, get_config
from .model import CoarseLoFTR

__all__ = ["CoarseLoFTR", "ModelConfig", "STUDENT", "TEACHER", "get_config"]
