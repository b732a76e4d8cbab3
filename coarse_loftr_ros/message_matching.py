"""Image messages in, matches out: conversion + sequence policy + ``Matcher``, ROS-free.

Public API:

- ``MessageMatcher(matcher, keyframe_every=1, keyframe_min_matches=0, max_pixels=DEFAULT_MAX_PIXELS)``:
  ``match_stereo(msg0, msg1) -> MatchedPair`` for a synchronised stereo pair, and
  ``match_sequence(msg) -> MatchedPair | None`` for the next frame of one camera
  (``None`` for a first frame). ``reset()`` restarts the sequence.
- ``MatchedPair``: the ``MatchResult``, the two source headers (``header0`` is image 0:
  camera 0, or the previous frame / keyframe) and the two numpy images (for the overlay).

The messages are ``sensor_msgs/Image`` or ``CompressedImage`` from rclpy or rosbags
(anything with ``header.stamp`` and the image fields); ``max_pixels`` (width x height,
0 or None: no limit) refuses larger images before they are decoded or copied.

A frame that cannot be converted, or that the matcher refuses (``ImageError``: too large,
truncated, too small, an aspect ratio the model input cannot hold), is skipped: it raises
``ImageError`` and leaves the sequence as it was, so the next frame is matched with the
last good one, as ``Matcher.match_next`` does. Any other error while matching restarts
the sequence and is re-raised, so the caller logs it and goes on with the next message.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ImageError
from .image_conversion import message_to_numpy
from .imageio import DEFAULT_MAX_PIXELS
from .pairing import Frame, SequencePairer, stamp_to_ns
from .result import MatchResult


@dataclass(frozen=True)
class MatchedPair:
    """A ``MatchResult`` with the headers and images it came from."""

    result: MatchResult
    header0: Any
    header1: Any
    image0: np.ndarray
    image1: np.ndarray


@dataclass(frozen=True)
class _SequenceImage:
    header: Any
    image: np.ndarray
    features: Any = None  # Matcher.extract of the image, kept while it may be a keyframe


class MessageMatcher:
    """Runs a ``Matcher`` (``coarse_loftr_ros.Matcher`` or anything with its ``match``,
    ``match_next``, ``extract``, ``match_extracted`` and ``reset``) on image messages.

    Sequence mode follows ``SequencePairer``'s keyframe policy. With the default policy
    (``keyframe_every=1``, no match threshold: always the previous frame) it uses
    ``Matcher.match_next``; with a keyframe policy it keeps the keyframe's
    ``Matcher.extract`` and matches each frame against it with ``match_extracted``.
    Either way each frame's CNN features are computed once.
    """

    def __init__(
        self, matcher: Any, keyframe_every: int = 1, keyframe_min_matches: int = 0, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> None:
        self.matcher = matcher
        self.max_pixels = max_pixels
        self.pairer = SequencePairer(keyframe_every=keyframe_every, min_matches=keyframe_min_matches)
        self.uses_match_next = keyframe_every == 1 and keyframe_min_matches == 0

    def match_stereo(self, msg0: Any, msg1: Any) -> MatchedPair:
        """Match camera 0's image with camera 1's."""
        image0 = message_to_numpy(msg0, self.max_pixels)
        image1 = message_to_numpy(msg1, self.max_pixels)
        result = self.matcher.match(image0, image1)
        return MatchedPair(result, msg0.header, msg1.header, image0, image1)

    def match_sequence(self, msg: Any) -> MatchedPair | None:
        """Match the reference frame with this one; ``None`` when it starts a sequence."""
        image = message_to_numpy(msg, self.max_pixels)  # an ImageError here changes nothing
        before = copy.copy(self.pairer)  # the policy's state (a few fields), to undo a refused frame
        try:
            features = None if self.uses_match_next else self.matcher.extract(image)
            frame = Frame(stamp_to_ns(msg.header.stamp), _SequenceImage(msg.header, image, features))
            pair = self.pairer.push(frame)
            if pair is None:
                # First frame, or time went backwards: start the matcher's sequence here too.
                self.matcher.reset()
                if self.uses_match_next:
                    self.matcher.match_next(image)
                return None
            reference: _SequenceImage = pair.reference.data
            if self.uses_match_next:
                result = self.matcher.match_next(image)
                if result is None:  # the matcher had no previous frame: start over here
                    self.pairer.reset()
                    self.pairer.push(frame)
                    return None
            else:
                result = self.matcher.match_extracted(reference.features, features)
                self.pairer.report_matches(len(result))
        except ImageError:
            # The matcher refused the frame before changing its own state (Matcher.prepare
            # runs first): undo the policy's step too, so the next frame pairs with the last
            # good one. (After a restart the matcher was reset: its next match_next returns
            # None and the branch above starts the sequence there.)
            self.pairer = before
            raise
        except Exception:
            self.reset()
            raise
        return MatchedPair(result, reference.header, msg.header, reference.image, image)

    def reset(self) -> None:
        """Forget the sequence: the next frame starts a new one."""
        self.pairer.reset()
        self.matcher.reset()
