"""A stop request that a SIGINT/SIGTERM handler may set safely.

A ``threading.Event`` is the wrong tool here: a signal handler runs on the main thread between
two bytecodes, and ``Event.set()`` takes the event's lock, which the main thread may be holding
at that moment (inside ``Event.wait()``): the process then waits on itself for ever. The handler
below only stores a flag, and ``wait`` sleeps in short slices instead of blocking on a lock.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

WAIT_SLICE_S = 0.02


class StopRequest:
    """A flag set by a signal handler (``set``), read by the main loop (``is_set``, ``wait``)."""

    def __init__(self) -> None:
        self._requested = False

    def set(self, *_signal_args: object) -> None:
        """Ask the main loop to stop. Usable as a signal handler; takes no lock."""
        self._requested = True

    def is_set(self) -> bool:
        return self._requested

    def wait(self, timeout_s: float) -> bool:
        """Sleep until the stop is requested or ``timeout_s`` seconds have passed; return ``is_set()``."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while not self._requested:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, WAIT_SLICE_S))
        return self._requested


@contextmanager
def stop_on_signals(*signals: signal.Signals) -> Iterator[StopRequest]:
    """Within the block, the given signals (default SIGINT and SIGTERM) set the yielded request;
    the previous handlers are restored after it. Call from the main thread."""
    stop = StopRequest()
    signals = signals or (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, stop.set) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
