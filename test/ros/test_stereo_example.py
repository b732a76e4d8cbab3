"""docs/ros2.md's stereo example, as written: bgr8 640x480 frames, best effort, the node's defaults.

A bgr8 640x480 image is 921,600 bytes, more than Fast DDS's default 512 KiB shared-memory
segment: with the default transports most best-effort frames arrive only in part and are lost
(3 to 5 of 16 pairs were matched). ``.ros2/setup.bash`` points Fast DDS at
``config/fastdds_shm_large.xml`` (an 8 MiB segment), and then every pair arrives. This test runs
the two commands of the page (read from docs/ros2.md, the frame folders replaced by 10 pairs of
real 640x480 frames) in the environment the tests run in, and fails when most pairs are lost.

The environment: ``source .ros2/setup.bash`` sets FASTDDS_DEFAULT_PROFILES_FILE (re-run
``scripts/setup_ros2_venv.sh`` if yours predates it). Under a full ROS install (no
``.ros2/setup.bash``) and no profile of your own, the test exports the shipped profile, as the
page tells such users to.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from node_live_support import REPO, Driver, NodeProcess, next_domain_id, ros_environment, ros_or_skip

_reason = ros_or_skip()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402

from coarse_loftr_ros.msg import MatchArray  # noqa: E402

FREIBURG = REPO.parent / "shared" / "data" / "freiburg_sequence"
PROFILE = REPO / "config" / "fastdds_shm_large.xml"
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
PAIRS = 10


def _documented_commands() -> tuple[list[str], list[str]]:
    """The stereo node and feeder command lines of docs/ros2.md's "Run the node and feed it"."""
    lines = (REPO / "docs" / "ros2.md").read_text().splitlines()
    node = [line for line in lines if line.startswith("python -m coarse_loftr_ros.node") and "mode:=stereo" in line]
    feeder = [line for line in lines if line.startswith("python scripts/publish_images.py") and "--right " in line]
    assert node and feeder, "docs/ros2.md no longer shows the stereo commands this test runs"
    node_words = shlex.split(node[0].rstrip("& "))
    return node_words[node_words.index("--ros-args") + 1:], shlex.split(feeder[0])[2:]


def _pairs(count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` stereo-like pairs of real 640x480 bgr8 frames: a frame and the next one."""
    import cv2

    files = sorted(FREIBURG.glob("*.png"))[: count + 1]
    if len(files) == count + 1:
        frames = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    else:
        import skimage.data

        photo = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (800, 640))
        frames = [np.ascontiguousarray(photo[8 * i: 8 * i + 480, 6 * i: 6 * i + 640]) for i in range(count + 1)]
    assert all(f.shape == (480, 640, 3) for f in frames)
    return frames[:-1], frames[1:]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    if not os.environ.get("COARSE_LOFTR_ROS2_PREFIX") and not any(env.get(name) for name in PROFILE_VARIABLES):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)  # a full ROS install: what the page says to export
    return env


def _mapped_segment_sizes(pid: int) -> list[int]:
    """Sizes of the Fast DDS shared-memory segments the process maps (its own and its peers')."""
    paths = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
             if "/dev/shm/fastdds_" in line and "port" not in line}
    return [os.path.getsize(p) for p in paths if os.path.exists(p)]


def test_the_documented_stereo_command_delivers_and_matches_bgr8_640x480_pairs(tmp_path, monkeypatch):
    import cv2

    env = _environment()
    for name in PROFILE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        if env.get(name):
            monkeypatch.setenv(name, env[name])  # the node (NodeProcess), the feeder and the driver below
    node_arguments, feeder_arguments = _documented_commands()
    left, right = tmp_path / "left_frames", tmp_path / "right_frames"
    for folder, images in zip((left, right), _pairs(PAIRS)):
        folder.mkdir()
        for i, image in enumerate(images):
            cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    feeder_arguments = [str(left) + "/" if a == "left_frames/" else str(right) + "/" if a == "right_frames/" else a
                        for a in feeder_arguments]
    assert str(left) + "/" in feeder_arguments and str(right) + "/" in feeder_arguments, feeder_arguments
    assert not {"--mono", "--reliable", "--compressed"} & set(feeder_arguments)  # bgr8, best effort, raw

    domain = next_domain_id()
    node = NodeProcess(node_arguments, domain, tmp_path / "node.log")
    driver = Driver(domain)
    try:
        matches, _ = driver.collect(MatchArray, "/matcher/matches")
        diagnostics, _ = driver.collect(DiagnosticArray, "/diagnostics")
        node.wait_for_log("publishing /matcher/matches")
        with open(tmp_path / "feeder.log", "w") as log:
            feeder = subprocess.run([sys.executable, str(REPO / "scripts" / "publish_images.py"), *feeder_arguments],
                                    env=ros_environment(domain), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=180)
        feed_log = (tmp_path / "feeder.log").read_text()
        assert feeder.returncode == 0 and f"published {PAIRS} pairs" in feed_log, feed_log
        segments = _mapped_segment_sizes(node.pid)
        # The last pairs matched (every pair, or nothing new for 15 s: a loaded machine may take
        # seconds for one pair), then one diagnostics message after them.
        deadline = time.monotonic() + 120.0
        previous, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline and len(matches) < PAIRS:
            if len(matches) != previous:
                previous, quiet_since = len(matches), time.monotonic()
            elif time.monotonic() - quiet_since > 15.0:
                break
            time.sleep(0.5)
        diagnostics.clear()
        driver.wait_for(lambda: any(s.name == "matcher" for _, a in diagnostics for s in a.status), 30.0, "diagnostics")
        values = {kv.key: kv.value for _, a in diagnostics for s in a.status if s.name == "matcher" for kv in s.values}
    finally:
        node.stop(signal.SIGINT)
        driver.close()

    profile = next((env[name] for name in PROFILE_VARIABLES if env.get(name)), None)
    summary = (f"{len(matches)} of {PAIRS} pairs matched; node: images total {values.get('images total')}, pairs "
               f"{values.get('inputs total')}, dropped stale {values.get('dropped stale total')}; Fast DDS profile: "
               f"{profile} (re-run scripts/setup_ros2_venv.sh if .ros2/setup.bash does not set one); "
               f"shared-memory segments the node maps: {sorted(segments)}")
    if profile and Path(profile).resolve() == PROFILE.resolve():
        assert max(segments, default=0) >= 8 * 1024 * 1024, "the profile did not take effect: " + summary
    # What the node promises, not a rate: the large frames arrive and pair, every pair formed is
    # matched or, when the node falls behind a loaded machine's feeder, dropped as stale (a
    # best-effort subscription may also lose frames then), and the newest is matched.
    pairs = int(values["inputs total"])
    assert int(values["images total"]) >= 2 * pairs and pairs >= 1, summary
    assert len(matches) + int(values["dropped stale total"]) >= pairs - 1, summary
    assert len(matches) >= 1, summary
    assert all(len(m.confidence) > 20 for _, m in matches), summary
