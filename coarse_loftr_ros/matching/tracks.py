"""Feature tracks from the coarse cell indices of consecutive sequence-mode results, numpy only.

In sequence mode against the previous frame (``Matcher.match_next``, the node's default
``keyframe_every: 1``), ``cells1`` of the result of pair (k-1, k) and ``cells0`` of pair
(k, k+1) index the same frame k's coarse grid, so equal indices chain matches into tracks:

    tracker = CellTracker()
    for frame in frames:
        result = matcher.match_next(frame)
        if result is not None:
            ids = tracker.update(result.cells0, result.cells1)   # one track id per match

A track's length is the number of frames it is seen in (a single match: 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CellTracker:
    """Chains the matches of consecutive pairs (k, k+1) into tracks by cell index.

    ``update(cells0, cells1)`` takes one pair's cells (int arrays of equal length, in the
    frames k and k+1) and returns the id of the track each match extends or starts. A track
    ends when no match of the next pair starts from its cell. When two matches of a pair
    land on one cell of frame k+1 (possible after the sub-pixel polish moves a point across
    a cell border), the longer track goes on and the other ends there.
    """

    next_id: int = 0
    _active: dict[int, tuple[int, int]] = field(default_factory=dict)  # cell in the newest frame -> (id, frames seen)
    _finished: list[int] = field(default_factory=list)  # lengths of ended tracks

    def update(self, cells0: np.ndarray, cells1: np.ndarray) -> np.ndarray:
        """Extend the tracks with one pair's matches; returns int64 track ids, one per match."""
        cells0, cells1 = np.asarray(cells0).ravel().tolist(), np.asarray(cells1).ravel().tolist()
        if len(cells0) != len(cells1):
            raise ValueError(f"cells0 and cells1 must have one entry per match, got {len(cells0)} and {len(cells1)}")
        ids = np.empty(len(cells0), np.int64)
        following: dict[int, tuple[int, int]] = {}
        for index, (cell0, cell1) in enumerate(zip(cells0, cells1)):
            track, length = self._active.pop(cell0, (None, 1))
            if track is None:
                track, self.next_id = self.next_id, self.next_id + 1
            length += 1
            other = following.get(cell1)
            if other is not None:  # two matches on one cell: the shorter track ends here
                shorter, longer = sorted((other, (track, length)), key=lambda t: t[1])
                self._finished.append(shorter[1])
                track, length = longer
            following[cell1] = (track, length)
            ids[index] = track
        self._finished.extend(length for _, length in self._active.values())  # not continued
        self._active = following
        return ids

    def reset(self) -> None:
        """End every track (a gap in the sequence: the next pair starts new ones)."""
        self._finished.extend(length for _, length in self._active.values())
        self._active = {}

    def lengths(self) -> np.ndarray:
        """Lengths in frames of every track so far, ended and still running (int64)."""
        return np.asarray(self._finished + [length for _, length in self._active.values()], np.int64)


def track_statistics(lengths: np.ndarray) -> dict[str, float]:
    """Count, mean, median, 90th percentile and max of track lengths (frames)."""
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        return {"tracks": 0, "mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0}
    return {
        "tracks": int(lengths.size),
        "mean": float(lengths.mean()),
        "median": float(np.median(lengths)),
        "p90": float(np.percentile(lengths, 90)),
        "max": int(lengths.max()),
    }
