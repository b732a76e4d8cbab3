"""Where the test data lives: the checkout and ``../shared`` beside it (absent on a fresh clone).

Test modules import these names from here, not from ``conftest`` (two conftest modules, test/ and
test/ros/, would make ``from conftest import`` depend on collection order)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def require(path: Path) -> Path:
    """``path``, or skip the test with a message when ../shared (or the file in it) is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs ../shared beside the checkout")
    return path
