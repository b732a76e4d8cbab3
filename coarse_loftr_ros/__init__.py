"""coarse_loftr_ros: image correspondences with a compact coarse LoFTR transformer.

This module imports nothing heavy: in a ROS install the generated interfaces
(``coarse_loftr_ros.msg``) share this package, and a node that only reads matches must
not pay for onnxruntime or OpenCV. ``Matcher``, ``MatchResult`` and ``CoarseLoftrError``
load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CoarseLoftrError", "Matcher", "MatchResult", "__version__"]

if TYPE_CHECKING:
    from .errors import CoarseLoftrError
    from .matching.matcher import Matcher
    from .matching.result import MatchResult


def __getattr__(name: str) -> Any:
    if name == "Matcher":
        from .matching.matcher import Matcher

        return Matcher
    if name == "MatchResult":
        from .matching.result import MatchResult

        return MatchResult
    if name == "CoarseLoftrError":
        from .errors import CoarseLoftrError

        return CoarseLoftrError
    raise AttributeError(f"module 'coarse_loftr_ros' has no attribute {name!r}")
