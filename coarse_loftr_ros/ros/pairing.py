"""Which images to match with which: stereo time pairing and sequence keyframe policies, ROS-free.

Public API:

- ``stamp_to_ns(stamp) -> int``: a ``builtin_interfaces/Time`` (``sec``, ``nanosec``) in ns.
- ``Frame(stamp_ns, data)``: one image (or message) with its capture time.
- ``StereoPairer(slop_s, exact=False, queue_size=5)``: push frames of camera 0 and
  camera 1 as they arrive (``push(0, frame)`` / ``push(1, frame)``); a push returns a
  ``StereoPair`` when one is complete, else ``None``.
- ``SequencePairer(keyframe_every=1, min_matches=0, max_gap_s=0.0)``: push the frames of one
  camera (``push(frame, stream=None)``); it returns a ``SequencePair`` (reference, current) to
  match, and ``report_matches(n)`` after matching lets the keyframe policy react to the match
  count. It restarts the sequence (``RESTART_REASONS``) instead of pairing across a stamp going
  backwards, a gap longer than ``max_gap_s``, or a change of the ``StreamKey`` (frame_id, image
  size, encoding).
- ``StreamKey(frame_id, width, height, encoding)``: what must stay the same within a sequence.
- ``LatestOnlySlot``: a thread-safe one-item mailbox. A producer (a subscription
  callback) ``put``s the newest item, replacing and counting any item not yet taken; a
  worker ``take``s it. Slow processing then drops stale items instead of queueing them.

All times are integer nanoseconds. Both pairers expect non-decreasing stamps per
camera; a stamp that goes backwards (a bag played in a loop, a simulation reset) clears
the state instead of pairing across the jump (the sequence pairer also restarts on a long gap
or another camera's frames, see ``SequencePairer``). Memory is bounded: at most ``queue_size``
frames per camera (stereo) or two frames (sequence) are held.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (fields ``sec``, ``nanosec``) as integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


@dataclass(frozen=True)
class Frame:
    """An image or message ``data`` captured at ``stamp_ns`` (nanoseconds)."""

    stamp_ns: int
    data: Any


@dataclass(frozen=True)
class StereoPair:
    """Frames of camera 0 and camera 1 taken within the pairer's slop of each other."""

    frame0: Frame
    frame1: Frame

    @property
    def skew_ns(self) -> int:
        """``frame1.stamp_ns - frame0.stamp_ns``."""
        return self.frame1.stamp_ns - self.frame0.stamp_ns


class StereoPairer:
    """Pair the frames of two cameras by capture time.

    Approximate time (default): two frames pair when their stamps differ by at most
    ``slop_s`` seconds. The pairer decides as soon as a frame arrives, without waiting
    for later frames: the older of the two oldest waiting frames is dropped when nothing
    from the other camera can come within the slop, and otherwise pairs with the other
    camera's oldest frame, unless a newer frame from its own camera, already waiting,
    is closer to that partner. With a slop below half the frame period (the usual case
    for a stereo camera) this is the closest-stamp pairing. ``exact=True`` pairs only
    identical stamps.

    Each camera keeps at most ``queue_size`` unpaired frames; older ones are dropped.
    ``dropped`` counts every frame discarded without being paired, ``resets`` the
    times a stamp went backwards and the queues were cleared.
    """

    def __init__(self, slop_s: float = 0.02, exact: bool = False, queue_size: int = 5) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if not exact and slop_s < 0:
            raise ValueError(f"slop_s must be >= 0 seconds, got {slop_s}")
        self.slop_ns = 0 if exact else int(round(slop_s * NS_PER_S))
        self.queue_size = queue_size
        self._queues: tuple[deque[Frame], deque[Frame]] = (deque(), deque())
        self._last_stamp: list[int | None] = [None, None]
        self.dropped = 0
        self.resets = 0

    def push(self, camera: int, frame: Frame) -> StereoPair | None:
        """Add a frame of camera 0 or 1; return the pair it completes, if any."""
        if camera not in (0, 1):
            raise ValueError(f"camera must be 0 or 1, got {camera}")
        last = self._last_stamp[camera]
        if last is not None and frame.stamp_ns < last:
            self.reset()
            self.resets += 1
        elif last is not None and frame.stamp_ns == last:
            self.dropped += 1  # a repeated stamp on one camera: keep the first
            return None
        self._last_stamp[camera] = frame.stamp_ns
        queue = self._queues[camera]
        if len(queue) == self.queue_size:
            queue.popleft()
            self.dropped += 1
        queue.append(frame)
        return self._pair_heads()

    def push0(self, frame: Frame) -> StereoPair | None:
        return self.push(0, frame)

    def push1(self, frame: Frame) -> StereoPair | None:
        return self.push(1, frame)

    def reset(self) -> None:
        """Forget all waiting frames (they count as dropped) and the last stamps."""
        self.dropped += len(self._queues[0]) + len(self._queues[1])
        for queue in self._queues:
            queue.clear()
        self._last_stamp = [None, None]

    @property
    def waiting(self) -> tuple[int, int]:
        """Number of unpaired frames held for camera 0 and camera 1."""
        return len(self._queues[0]), len(self._queues[1])

    def _pair_heads(self) -> StereoPair | None:
        queues = self._queues
        while queues[0] and queues[1]:
            # ``older`` is the camera whose oldest frame is older (camera 0 on a tie).
            older = 0 if queues[0][0].stamp_ns <= queues[1][0].stamp_ns else 1
            first, partner = queues[older][0], queues[1 - older][0]
            gap = partner.stamp_ns - first.stamp_ns  # >= 0
            if gap > self.slop_ns:
                # Every frame of the other camera, now or later, is at least as far.
                queues[older].popleft()
                self.dropped += 1
                continue
            if len(queues[older]) > 1 and abs(queues[older][1].stamp_ns - partner.stamp_ns) < gap:
                # The next frame of the same camera suits the partner better.
                queues[older].popleft()
                self.dropped += 1
                continue
            queues[0].popleft()
            queues[1].popleft()
            pair = (first, partner) if older == 0 else (partner, first)
            return StereoPair(*pair)
        return None


@dataclass(frozen=True)
class StreamKey:
    """What must stay the same between two frames of one sequence.

    ``frame_id`` is the header's; ``width`` and ``height`` are the image's in pixels (after
    decoding, for compressed images); ``encoding`` is ``sensor_msgs/Image.encoding`` or
    ``CompressedImage.format``.
    """

    frame_id: str
    width: int
    height: int
    encoding: str


# Why a sequence restarted, in the order they are checked: the first that applies is counted.
RESTART_REASONS = ("stamp_backwards", "frame_id", "size", "encoding", "gap")


def restart_reason(last_stamp_ns: int, last_key: StreamKey | None, stamp_ns: int, key: StreamKey | None,
                   max_gap_ns: int) -> str | None:
    """The reason (one of ``RESTART_REASONS``) not to pair a frame with the previous one, or ``None``.

    ``max_gap_ns`` <= 0 allows any gap. Keys are compared only when both frames have one.
    """
    if stamp_ns < last_stamp_ns:
        return "stamp_backwards"
    if key is not None and last_key is not None:
        if key.frame_id != last_key.frame_id:
            return "frame_id"
        if (key.width, key.height) != (last_key.width, last_key.height):
            return "size"
        if key.encoding != last_key.encoding:
            return "encoding"
    if max_gap_ns > 0 and stamp_ns - last_stamp_ns > max_gap_ns:
        return "gap"
    return None


@dataclass(frozen=True)
class SequencePair:
    """The reference frame (previous frame or keyframe) and the current frame."""

    reference: Frame
    current: Frame


class SequencePairer:
    """Pair each frame of one camera with a reference: the previous frame or a keyframe.

    The first frame becomes the keyframe and yields no pair. Every later frame is
    paired with the current keyframe, and then becomes the new keyframe when

    - ``keyframe_every`` > 0 and it is the ``keyframe_every``-th frame since the
      keyframe (``keyframe_every=1``, the default, always matches against the previous
      frame), or
    - ``min_matches`` > 0 and ``report_matches(n)`` says its pair had fewer than
      ``min_matches`` matches (tracking against the old keyframe got weak), or
    - ``min_score`` > 0 and ``report_matches(n, score)`` says its pair's
      ``MatchResult.match_score`` was below ``min_score`` (the same, measured per coarse cell:
      independent of the image size and of the zoom views' extra matches).

    ``keyframe_every=0`` with ``min_matches`` or ``min_score`` > 0 replaces the keyframe only on
    weak matching.

    The sequence restarts (the frame becomes the first of a new one and yields no pair) when
    its stamp goes backwards, when it comes more than ``max_gap_s`` seconds after the previous
    frame (``max_gap_s`` = 0: never), or when its ``StreamKey`` (frame_id, size, encoding)
    differs from the previous frame's. ``restarts`` counts them by reason, ``resets`` in all,
    and ``last_restart`` is the reason for the last ``push`` (``None``: no restart).
    """

    def __init__(self, keyframe_every: int = 1, min_matches: int = 0, max_gap_s: float = 0.0, min_score: float = 0.0) -> None:
        if keyframe_every < 0:
            raise ValueError(f"keyframe_every must be >= 0, got {keyframe_every}")
        if min_matches < 0:
            raise ValueError(f"min_matches must be >= 0, got {min_matches}")
        if not min_score >= 0:
            raise ValueError(f"min_score must be >= 0, got {min_score}")
        if keyframe_every == 0 and min_matches == 0 and min_score == 0:
            raise ValueError("keyframe_every=0 needs min_matches or min_score > 0, or the keyframe is never replaced")
        if not max_gap_s >= 0:
            raise ValueError(f"max_gap_s must be >= 0 seconds (0 = no limit), got {max_gap_s}")
        self.max_gap_ns = int(round(max_gap_s * NS_PER_S))
        self.keyframe_every = keyframe_every
        self.min_matches = min_matches
        self.min_score = float(min_score)
        self.keyframe: Frame | None = None
        self.frames_since_keyframe = 0
        self.keyframes = 0
        self.resets = 0
        self.restarts: dict[str, int] = {reason: 0 for reason in RESTART_REASONS}
        self.last_restart: str | None = None
        self._pending: Frame | None = None
        self._last_stamp: int | None = None
        self._last_key: StreamKey | None = None

    def __copy__(self) -> "SequencePairer":
        """A copy with its own restart counters (to undo a push: ``MessageMatcher``)."""
        clone = SequencePairer.__new__(SequencePairer)
        clone.__dict__.update(self.__dict__)
        clone.restarts = dict(self.restarts)
        return clone

    def push(self, frame: Frame, stream: StreamKey | None = None) -> SequencePair | None:
        """Add the next frame; return (reference, current) to match, or ``None``.

        ``stream``: the frame's ``StreamKey``; ``None`` skips the frame_id/size/encoding checks.
        """
        self.last_restart = None
        if self._last_stamp is not None:
            reason = restart_reason(self._last_stamp, self._last_key, frame.stamp_ns, stream, self.max_gap_ns)
            if reason is not None:
                self.reset()
                self.resets += 1
                self.restarts[reason] += 1
                self.last_restart = reason
        self._last_stamp = frame.stamp_ns
        self._last_key = stream
        if self.keyframe is None:
            self._set_keyframe(frame)
            return None
        pair = SequencePair(self.keyframe, frame)
        self.frames_since_keyframe += 1
        self._pending = frame
        if self.keyframe_every and self.frames_since_keyframe >= self.keyframe_every:
            self._set_keyframe(frame)
        return pair

    def report_matches(self, num_matches: int, score: float | None = None) -> None:
        """Tell the policy how many matches the last returned pair had, and its
        ``MatchResult.match_score`` (None: not known, the score rule does not fire)."""
        weak = (self.min_matches and num_matches < self.min_matches) or (
            self.min_score and score is not None and score < self.min_score)
        if self._pending is not None and weak:
            if self.keyframe is not self._pending:
                self._set_keyframe(self._pending)
        self._pending = None

    def reset(self) -> None:
        """Start over: the next frame becomes the keyframe."""
        self.keyframe = None
        self._pending = None
        self._last_stamp = None
        self._last_key = None
        self.frames_since_keyframe = 0

    def _set_keyframe(self, frame: Frame) -> None:
        self.keyframe = frame
        self.frames_since_keyframe = 0
        self._pending = None
        self.keyframes += 1


class LatestOnlySlot(Generic[T]):
    """A thread-safe mailbox that holds only the newest item.

    ``put`` never blocks: it replaces an item the consumer has not taken yet and counts
    it in ``dropped``. ``take`` waits up to ``timeout_s`` for an item and returns it, or
    ``None`` on timeout or after ``close()``.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; return True when it replaced an item not yet taken."""
        with self._condition:
            replaced = self._has_item
            if replaced:
                self.dropped += 1
            self._item, self._has_item = item, True
            self.put_count += 1
            self._condition.notify()
            return replaced

    def take(self, timeout_s: float | None = None) -> T | None:
        """The newest item (removing it), or ``None`` after ``timeout_s`` or ``close()``."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._has_item or self._closed, timeout=timeout_s):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self) -> None:
        """Wake a waiting ``take`` so a worker thread can exit."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
