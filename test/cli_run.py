"""Running the `coarse-loftr` command as a user does, and checking its one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m coarse_loftr_ros.cli ARGS`` in a child process; stdout and stderr captured."""
    return subprocess.run([sys.executable, "-m", "coarse_loftr_ros.cli", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def assert_one_line_error(process: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, one stderr line holding every fragment, no traceback; returns the line."""
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr
    assert "Traceback" not in process.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
