"""Image messages in, matches out: conversion + sequence policy + ``Matcher``, ROS-free.

Public API:

- ``MessageMatcher(matcher, keyframe_every=1, keyframe_min_matches=0, max_pixels=DEFAULT_MAX_PIXELS,
  max_gap_s=0.0, restart_on_change=False, keyframe_min_score=0.0)``: ``match_stereo(msg0, msg1) -> MatchedPair`` for a synchronised stereo pair,
  and ``match_sequence(msg) -> MatchedPair | None`` for the next frame of one camera
  (``None`` for a first frame, or one that restarts the sequence: ``last_restart`` then names
  the reason, one of ``pairing.RESTART_REASONS``). ``reset()`` restarts the sequence.
- ``stream_key(msg, image) -> StreamKey``: frame_id, size and encoding of an image message.
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

from ..errors import ImageError
from ..imageio import DEFAULT_MAX_PIXELS
from ..matching.result import MatchResult
from .image_conversion import message_to_numpy
from .pairing import Frame, SequencePairer, StreamKey, stamp_to_ns


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


def stream_key(msg: Any, image: np.ndarray) -> StreamKey:
    """The ``StreamKey`` of an image message: header frame_id, the converted image's width and
    height in pixels, and ``encoding`` (``Image``) or ``format`` (``CompressedImage``)."""
    encoding = getattr(msg, "encoding", None)
    if encoding is None:
        encoding = getattr(msg, "format", "")
    height, width = image.shape[:2]
    return StreamKey(str(msg.header.frame_id), int(width), int(height), str(encoding))


class MessageMatcher:
    """Runs a ``Matcher`` (``coarse_loftr_ros.Matcher`` or anything with its ``match``,
    ``match_next``, ``extract``, ``match_extracted`` and ``reset``) on image messages.

    Sequence mode follows ``SequencePairer``'s keyframe policy. With the default policy
    (``keyframe_every=1``, no match threshold: always the previous frame) it uses
    ``Matcher.match_next``; with a keyframe policy it keeps the keyframe's
    ``Matcher.extract`` and matches each frame against it with ``match_extracted``.
    Either way each frame's CNN features are computed once.

    A frame restarts the sequence (no pair for it; it becomes the first frame of a new one)
    when its stamp goes backwards, when it comes more than ``max_gap_s`` seconds after the
    previous frame (0: no limit), or, with ``restart_on_change`` (the node sets it), when its
    frame_id, size or encoding differ from the previous frame's; ``last_restart`` names the
    reason of the last call. (``coarse-loftr replay`` leaves ``restart_on_change`` off: an image
    folder may mix sizes and encodings on purpose.)
    """

    def __init__(
        self, matcher: Any, keyframe_every: int = 1, keyframe_min_matches: int = 0, max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_gap_s: float = 0.0, restart_on_change: bool = False, keyframe_min_score: float = 0.0,
    ) -> None:
        self.matcher = matcher
        self.max_pixels = max_pixels
        self.pairer = SequencePairer(keyframe_every=keyframe_every, min_matches=keyframe_min_matches, max_gap_s=max_gap_s,
                                     min_score=keyframe_min_score)
        self.last_restart: str | None = None
        self.restart_on_change = restart_on_change
        self.uses_match_next = keyframe_every == 1 and keyframe_min_matches == 0 and keyframe_min_score == 0

    def match_stereo(self, msg0: Any, msg1: Any) -> MatchedPair:
        """Match camera 0's image with camera 1's."""
        image0 = message_to_numpy(msg0, self.max_pixels)
        image1 = message_to_numpy(msg1, self.max_pixels)
        result = self.matcher.match(image0, image1)
        return MatchedPair(result, msg0.header, msg1.header, image0, image1)

    def match_sequence(self, msg: Any) -> MatchedPair | None:
        """Match the reference frame with this one; ``None`` when it starts a sequence."""
        self.last_restart = None
        image = message_to_numpy(msg, self.max_pixels)  # an ImageError here changes nothing
        before = copy.copy(self.pairer)  # the policy's state (a few fields), to undo a refused frame
        try:
            features = None if self.uses_match_next else self.matcher.extract(image)
            frame = Frame(stamp_to_ns(msg.header.stamp), _SequenceImage(msg.header, image, features))
            key = stream_key(msg, image) if self.restart_on_change else None
            pair = self.pairer.push(frame, key)
            self.last_restart = self.pairer.last_restart
            if pair is None:
                # First frame, or a restart: start the matcher's sequence here too. On a restart,
                # check the frame first (Matcher.prepare, the step that refuses frames), so that a
                # refused frame leaves the matcher's previous frame in place for the next one.
                if self.last_restart is not None and self.uses_match_next:
                    self.matcher.prepare(image)
                self.matcher.reset()
                if self.uses_match_next:
                    self.matcher.match_next(image)
                return None
            reference: _SequenceImage = pair.reference.data
            if self.uses_match_next:
                result = self.matcher.match_next(image)
                if result is None:  # the matcher had no previous frame: start over here
                    self.pairer.reset()
                    self.pairer.push(frame, key)
                    return None
            else:
                result = self.matcher.match_extracted(reference.features, features)
                self.pairer.report_matches(len(result), result.match_score)
        except ImageError:
            # The matcher refused the frame before changing its own state (Matcher.prepare
            # runs first): undo the policy's step too, so the next frame pairs with the last
            # good one. (On a restart the frame is checked before the matcher is reset; should
            # the reset happen anyway, the next match_next returns None and the branch above
            # starts the sequence there.)
            self.pairer = before
            self.last_restart = None
            raise
        except Exception:
            self.reset()
            raise
        return MatchedPair(result, reference.header, msg.header, reference.image, image)

    def reset(self) -> None:
        """Forget the sequence: the next frame starts a new one."""
        self.pairer.reset()
        self.matcher.reset()
