"""What the matcher node reports in /diagnostics, computed without ROS.

Public API:

- ``MatcherStatistics(window_s=10.0, start_time=None)``: thread-safe counters and timings. The node calls
  ``record_image()`` for every image message received, ``record_unpaired(n)`` when the stereo
  pairer drops ``n`` images that found no partner, ``record_input()`` when a pair (stereo) or
  frame (sequence) is ready for matching, ``record_dropped()`` when a newer one replaces it
  before processing, ``record_processed(latency_ms, matches, model_runs)``
  after publishing, ``record_overlay()`` for each overlay published, ``record_bad_message()`` for an image that could not be converted or
  matched, ``record_failure()`` for an unexpected error, ``record_restart(reason)`` when a frame
  restarts the sequence (``pairing.RESTART_REASONS``) and ``record_camera_info_mismatch()``
  when an image's size differs from its camera's CameraInfo.
- ``MatcherStatistics.summary(now, input_timeout_s, camera_info_waiting=(), restarts=False,
  camera_info=False) -> DiagnosticSummary``: the level
  (``"ok"``, ``"warn"`` or ``"error"``), a one-line message and the key/value pairs that
  ``node.py`` copies into a ``diagnostic_msgs/DiagnosticStatus``.

Rates, means, maxima and the latency's 95th percentile (nearest rank: numpy's ``inverted_cdf``)
are over the last ``window_s`` seconds of a monotonic clock (seconds).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .pairing import RESTART_REASONS


@dataclass(frozen=True)
class DiagnosticSummary:
    level: str  # "ok" | "warn" | "error"
    message: str
    values: dict[str, str] = field(default_factory=dict)


class MatcherStatistics:
    """Counters (totals) and a sliding window of recent events for the diagnostics."""

    def __init__(self, window_s: float = 10.0, start_time: float | None = None) -> None:
        """``start_time``: when the node started, on the monotonic clock (default: now)."""
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._lock = threading.Lock()
        self._inputs: deque[float] = deque()
        self._processed: deque[tuple[float, float, int, int]] = deque()  # (time, latency_ms, matches, model runs)
        self._bad: deque[float] = deque()
        self._failures: deque[float] = deque()
        self._started = time.monotonic() if start_time is None else start_time
        self._last_input: float | None = None
        self._last_image: float | None = None
        self.images = 0
        self.unpaired = 0
        self.overlays = 0
        self.inputs = 0
        self.processed = 0
        self.dropped = 0
        self.shed = 0
        self.bad_messages = 0
        self.failures = 0
        self.restarts = {reason: 0 for reason in RESTART_REASONS}
        self.camera_info_mismatches = 0
        self._mismatches: deque[float] = deque()

    def record_image(self, now: float | None = None) -> None:
        """An image message arrived (before any pairing)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.images += 1
            self._last_image = now

    def record_unpaired(self, count: int = 1) -> None:
        """The stereo pairer dropped ``count`` images that found no partner within the slop."""
        with self._lock:
            self.unpaired += count

    def record_overlay(self) -> None:
        """An overlay picture was drawn and published (only while ~/overlay has subscribers)."""
        with self._lock:
            self.overlays += 1

    def record_input(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.inputs += 1
            self._inputs.append(now)
            self._last_input = now

    def record_dropped(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def record_processed(self, latency_ms: float, matches: int, model_runs: int = 1, now: float | None = None) -> None:
        """A pair was matched and published: its latency (receipt to publish, ms), its matches and
        the model runs it cost (``MatchResult.model_runs``)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.processed += 1
            self._processed.append((now, float(latency_ms), int(matches), int(model_runs)))

    def record_bad_message(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.bad_messages += 1
            self._bad.append(now)

    def record_failure(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.failures += 1
            self._failures.append(now)

    def record_shed(self, count: int = 1) -> None:
        """A pair was matched with one model run (no prior, search or rewarp): the node was behind."""
        with self._lock:
            self.shed += count

    def record_restart(self, reason: str) -> None:
        """A frame restarted the sequence; ``reason`` is one of ``pairing.RESTART_REASONS``."""
        if reason not in self.restarts:
            raise ValueError(f"unknown restart reason {reason!r}; one of {', '.join(RESTART_REASONS)}")
        with self._lock:
            self.restarts[reason] += 1

    def record_camera_info_mismatch(self, now: float | None = None) -> None:
        """An image's width/height differed from its camera's CameraInfo (a zero one went out)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.camera_info_mismatches += 1
            self._mismatches.append(now)

    def _trim(self, now: float) -> None:
        start = now - self.window_s
        for events in (self._inputs, self._bad, self._failures, self._mismatches):
            while events and events[0] < start:
                events.popleft()
        while self._processed and self._processed[0][0] < start:
            self._processed.popleft()

    def summary(self, now: float | None = None, input_timeout_s: float = 5.0, camera_info_waiting: Sequence[str] = (),
                restarts: bool = False, camera_info: bool = False) -> DiagnosticSummary:
        """Level, message and values for the last ``window_s`` seconds ending at ``now``.

        ``camera_info_waiting``: the CameraInfo topics no message arrived on yet; ``restarts``
        (sequence mode) and ``camera_info`` (use_camera_info) add their keys to the values.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            span = min(self.window_s, max(now - self._started, 1e-9))
            input_hz = len(self._inputs) / span
            output_hz = len(self._processed) / span
            latencies = [p[1] for p in self._processed]
            matches = [p[2] for p in self._processed]
            runs = [p[3] for p in self._processed]
            values = {
                "input rate (Hz)": f"{input_hz:.2f}",
                "output rate (Hz)": f"{output_hz:.2f}",
                "latency mean (ms)": f"{sum(latencies) / len(latencies):.1f}" if latencies else "-",
                "latency p95 (ms)": f"{np.percentile(latencies, 95, method='inverted_cdf'):.1f}" if latencies else "-",
                "latency max (ms)": f"{max(latencies):.1f}" if latencies else "-",
                "model runs mean": f"{sum(runs) / len(runs):.2f}" if runs else "-",
                "model runs max": str(max(runs)) if runs else "-",
                "matches last": str(matches[-1]) if matches else "-",
                "matches mean": f"{sum(matches) / len(matches):.1f}" if matches else "-",
                "images total": str(max(self.images, self.inputs)),
                "unpaired images dropped total": str(self.unpaired),
                "inputs total": str(self.inputs),
                "processed total": str(self.processed),
                "dropped stale total": str(self.dropped),
                "steps shed total": str(self.shed),
                "bad messages total": str(self.bad_messages),
                "failures total": str(self.failures),
                "overlays total": str(self.overlays),
            }
            if restarts:
                values.update({f"sequence restarts ({reason}) total": str(n) for reason, n in self.restarts.items()})
            if camera_info:
                values["camera_info"] = ("waiting for " + ", ".join(camera_info_waiting)) if camera_info_waiting else "received"
                values["camera_info size mismatches total"] = str(self.camera_info_mismatches)
            last_input = self._last_input if self._last_input is not None else self._started
            last_image = max(last_input, self._last_image if self._last_image is not None else self._started)
            idle, unpaired_for = now - last_image, now - last_input
            recent_failures, recent_bad = len(self._failures), len(self._bad)
            recent_inputs = len(self._inputs)
            recent_mismatches = len(self._mismatches)
            no_image_yet = self._last_image is None and self._last_input is None

        if recent_failures:
            return DiagnosticSummary("error", f"{recent_failures} matching failure(s) in the last {self.window_s:g} s; see the node log", values)
        if no_image_yet and idle <= input_timeout_s:
            return DiagnosticSummary("warn", "waiting for images", values)
        if idle > input_timeout_s:
            return DiagnosticSummary("warn", f"no images for {idle:.1f} s; check the image topics and their QoS", values)
        if unpaired_for > input_timeout_s:
            return DiagnosticSummary(
                "warn", f"images arrive but none paired for {unpaired_for:.1f} s; check that both cameras' stamps "
                "agree within slop_s (or use sync approximate)", values
            )
        if recent_bad:
            return DiagnosticSummary("warn", f"{recent_bad} bad image message(s) skipped in the last {self.window_s:g} s", values)
        if recent_mismatches:
            return DiagnosticSummary(
                "warn", f"{recent_mismatches} image(s) in the last {self.window_s:g} s differ in size from their "
                "camera_info: published with a zero CameraInfo", values
            )
        if camera_info_waiting:
            return DiagnosticSummary(
                "warn", "waiting for camera_info on " + ", ".join(camera_info_waiting)
                + " (matches go out with a zero CameraInfo)", values
            )
        if recent_inputs >= 4 and output_hz < 0.5 * input_hz:
            return DiagnosticSummary(
                "warn", f"matching {output_hz:.1f} Hz of {input_hz:.1f} Hz input: stale pairs are dropped", values
            )
        return DiagnosticSummary("ok", f"matching at {output_hz:.1f} Hz", values)

