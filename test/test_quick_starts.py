"""The README's two quick starts are what CI runs, word for word.

CI (``.ci/run``) must take the path a user takes: it runs the README's ROS 2 block's first line
as written, and the README names ``.ci/run`` as the test command. A fresh clone has no
``.ros2/``: ``scripts/setup_ros2_venv.sh`` must build there with no variables set, which CI
proves each time it runs (this file checks the texts agree).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[list[str]]:
    return [block.strip().splitlines() for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_ci_runs_the_readme_ros2_quick_start_verbatim():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    setup_lines = [block[0] for block in _bash_blocks(readme) if "setup_ros2_venv.sh" in block[0]]
    assert setup_lines, "the README has no ROS 2 quick start block"
    assert setup_lines[0] == "bash scripts/setup_ros2_venv.sh && source .ros2/setup.bash"
    assert setup_lines[0] in ci, ".ci/run must run the README's ROS 2 set-up line as written"


def test_readme_test_command_is_ci():
    readme = (REPO / "README.md").read_text()
    assert ["bash .ci/run"] in _bash_blocks(readme)


def test_ci_and_setup_write_only_inside_the_checkout():
    # No apt-get, sudo, --user installs or a system-site-packages venv: everything CI installs goes
    # into .ros2/ (pip's cache aside).
    for path in (REPO / ".ci" / "run", REPO / "scripts" / "setup_ros2_venv.sh"):
        # Commands only: comments and the hints that errors print may name apt-get.
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith(("#", "echo")) and ">&2" not in line)
        for forbidden in ("apt-get", "sudo", "--user", "--system-site-packages"):
            assert forbidden not in code, f"{path.name} uses {forbidden}"
    assert 'PREFIX="${ROS2_PREFIX:-$REPO/.ros2}"' in (REPO / "scripts" / "setup_ros2_venv.sh").read_text()
