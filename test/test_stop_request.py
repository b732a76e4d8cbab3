"""The stop request that SIGINT/SIGTERM set in the node and in scripts/publish_images.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from shared_data import REPO

from coarse_loftr_ros.stop_request import StopRequest, stop_on_signals


def test_wait_returns_after_its_timeout_when_nothing_is_requested():
    stop = StopRequest()
    began = time.monotonic()
    assert stop.wait(0.1) is False
    assert time.monotonic() - began >= 0.1
    assert not stop.is_set()


def test_a_signal_during_wait_ends_the_wait_early():
    with stop_on_signals(signal.SIGALRM) as stop:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        began = time.monotonic()
        assert stop.wait(10.0) is True
        assert time.monotonic() - began < 5.0
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # the previous handler is back


def test_a_storm_of_signals_never_blocks_the_loop_that_waits():
    """A handler that took a lock (threading.Event.set) could wait for ever on the main thread that
    it interrupted. Thousands of signals land during wait() and is_set() here; the loop must end."""
    script = textwrap.dedent("""
        import signal, sys
        sys.path.insert(0, sys.argv[1])
        from coarse_loftr_ros.stop_request import StopRequest
        current = [StopRequest()]
        signal.signal(signal.SIGALRM, lambda *_: current[0].set())
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
        for _ in range(3000):
            current[0] = StopRequest()
            while not current[0].wait(0.001):
                pass
        signal.setitimer(signal.ITIMER_REAL, 0)
        print("done")
    """)
    result = subprocess.run([sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
