"""The live matcher node, end to end: a real node process, real rclpy, Fast DDS on loopback.

Each test starts ``python -m coarse_loftr_ros.node --ros-args ...`` (as launch_testing
would), publishes images from an rclpy node in this process and checks what comes back on
``/matcher/matches``, ``/matcher/overlay`` and ``/diagnostics``, compared with
``Matcher.match`` on the same frames. Skips without ROS 2 and a colcon-built workspace
(``bash scripts/setup_ros2_venv.sh``, then ``source .ros2/setup.bash``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from node_live_support import (
    REPO,
    Driver,
    NodeProcess,
    assert_same_matches,
    compressed_message,
    image_message,
    next_domain_id,
    ros_or_skip,
    stamp,
)

_reason = ros_or_skip()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from coarse_loftr_ros.msg import MatchArray  # noqa: E402

FREIBURG = REPO.parent / "shared" / "data" / "freiburg_sequence"
READY = "publishing /matcher/matches"


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Consecutive 640x480 BGR frames: ../shared's Freiburg sequence, or shifted crops of a photograph."""
    import cv2

    files = sorted(FREIBURG.glob("*.png"))
    if files:
        return [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files[:8]]
    import skimage.data

    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)  # 512x512
    photo = cv2.resize(photo, (800, 640))
    return [np.ascontiguousarray(photo[8 * i: 8 * i + 480, 6 * i: 6 * i + 640]) for i in range(8)]


@pytest.fixture(scope="module")
def matcher():
    from coarse_loftr_ros import Matcher

    return Matcher(lk_refinement=False, rotation_search=False, rewarp=False)


# The node with the model's own matches (no polish, no rotation search, no rewarp), for the tests that
# compare it with ``matcher`` on another path through the model (``matcher.match`` against the
# node's sequence graphs): the polish would turn rounding into different matches.
MODEL_ONLY = ("-p", "lk_refinement:=false", "-p", "rotation_search:=false", "-p", "rewarp:=false")


def _sequence_matcher(first: np.ndarray):
    """The node's sequence path in process: ``Matcher.match_next``, started on ``first``."""
    from coarse_loftr_ros import Matcher

    sequence = Matcher()
    sequence.match_next(first)
    return sequence


@pytest.fixture
def live(tmp_path: Path):
    """start(arguments) -> (NodeProcess, Driver); both are stopped after the test."""
    started: list = []

    def start(*arguments: str, wait_ready: bool = True, command: list[str] | None = None, cwd: Path = REPO):
        domain = next_domain_id()
        node = NodeProcess(list(arguments), domain, tmp_path / f"node{len(started)}.log", command=command, cwd=cwd)
        driver = Driver(domain)
        started.append((node, driver))
        if wait_ready:
            node.wait_for_log(READY)
        return node, driver

    yield start
    for node, driver in started:
        node.stop(signal.SIGINT)
        driver.close()


def _wait_count(driver: Driver, received: list, count: int, timeout_s: float = 60.0, what: str = "MatchArray") -> None:
    driver.wait_for(lambda: len(received) >= count, timeout_s, f"{count} {what} message(s), got {len(received)}")


def _statuses(diagnostics: list) -> list:
    """The node's statuses: named after the node, ``matcher`` (as docs/node.md says)."""
    return [status for _, array in diagnostics for status in array.status if status.name == "matcher"]


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _feed_sequence(driver: Driver, publisher, matches: list, images: list[np.ndarray], start_s: float = 100.0,
                   make=image_message) -> list:
    """Publish frames one by one, each after the previous one's MatchArray; return their stamps."""
    stamps = []
    for i, image in enumerate(images):
        stamps.append(stamp(start_s + 0.1 * i))
        publisher.publish(make(image, stamps[-1]))
        if i == 0:
            time.sleep(1.0)  # the first frame starts the sequence: nothing to wait for
        else:
            _wait_count(driver, matches, i)
    return stamps


def test_sequence_mode_matches_consecutive_frames_like_matcher_match_next(live, frames):
    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable", "-r", "image:=/camera/image_raw")
    publisher = driver.publisher(Image, "/camera/image_raw")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    driver.wait_for_subscribers(publisher)
    images = frames[:5]
    stamps = _feed_sequence(driver, publisher, matches, images)
    time.sleep(0.5)
    assert len(matches) == len(images) - 1
    sequence = _sequence_matcher(images[0])
    for i, (_, msg) in enumerate(matches, start=1):
        assert (msg.header0.stamp, msg.header1.stamp, msg.header.stamp) == (stamps[i - 1], stamps[i], stamps[i])
        assert msg.header.frame_id == msg.header1.frame_id == "camera"
        height, width = images[i].shape[:2]
        assert (msg.image0_width, msg.image0_height, msg.image1_width, msg.image1_height) == (width, height, width, height)
        expected = sequence.match_next(images[i])
        assert (msg.grid_width, msg.grid_height) == tuple(expected.grid_size)
        assert msg.backend == "onnxruntime" and msg.model == str(expected.model)
        assert msg.latency_ms > 0
        assert_same_matches(msg, expected)


def test_the_installed_executable_runs_like_ros2_run(live, frames, tmp_path):
    """``lib/coarse_loftr_ros/matcher_node`` from the colcon install (what ``ros2 run`` starts),
    outside the checkout, so the installed copy of the package is the one that runs."""
    from ament_index_python.packages import get_package_prefix

    executable = Path(get_package_prefix("coarse_loftr_ros")) / "lib" / "coarse_loftr_ros" / "matcher_node"
    assert executable.is_file()
    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable", command=[str(executable)], cwd=tmp_path)
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    driver.wait_for_subscribers(publisher)
    _feed_sequence(driver, publisher, matches, frames[:3])
    assert all(len(msg.confidence) > 20 for _, msg in matches)


def _stereo_pair(driver, left_publisher, right_publisher, images, t0: float, t1: float):
    left_publisher.publish(image_message(images[0], stamp(t0), "left"))
    time.sleep(0.05)
    right_publisher.publish(image_message(images[1], stamp(t1), "right"))


def test_stereo_approximate_pairs_within_the_slop_and_drops_a_frame_without_partner(live, frames, matcher):
    node, driver = live(*MODEL_ONLY, "-p", "mode:=stereo", "-p", "sync:=approximate", "-p", "slop_s:=0.02",
                        "-p", "qos_reliability:=reliable", "-r", "image0:=/stereo/left", "-r", "image1:=/stereo/right")
    left, right = driver.publisher(Image, "/stereo/left"), driver.publisher(Image, "/stereo/right")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    diagnostics, _ = driver.collect(DiagnosticArray, "/diagnostics")
    driver.wait_for_subscribers(left)
    driver.wait_for_subscribers(right)
    pair = frames[0], frames[2]

    _stereo_pair(driver, left, right, pair, 10.000, 10.005)  # 5 ms apart: a pair
    _wait_count(driver, matches, 1)
    left.publish(image_message(pair[0], stamp(11.0), "left"))  # no right image near 11.0 s
    time.sleep(0.3)
    _stereo_pair(driver, left, right, pair, 12.000, 11.990)  # right 10 ms earlier: a pair
    _wait_count(driver, matches, 2)
    time.sleep(1.5)  # a diagnostics period
    assert len(matches) == 2
    stamps = [(m.header0.stamp, m.header1.stamp) for _, m in matches]
    assert stamps == [(stamp(10.0), stamp(10.005)), (stamp(12.0), stamp(11.990))]
    first = matches[0][1]
    assert first.header0.frame_id == "left" and first.header1.frame_id == "right" and first.header == first.header1
    assert_same_matches(first, matcher.match(*pair))
    values = _values(_statuses(diagnostics)[-1])
    assert values["unpaired images dropped total"] == "1" and values["processed total"] == "2"


def test_stereo_exact_needs_identical_stamps(live, frames, matcher):
    node, driver = live(*MODEL_ONLY, "-p", "mode:=stereo", "-p", "sync:=exact", "-p", "qos_reliability:=reliable")
    left, right = driver.publisher(Image, "/image0"), driver.publisher(Image, "/image1")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    driver.wait_for_subscribers(left)
    driver.wait_for_subscribers(right)
    pair = frames[1], frames[3]
    _stereo_pair(driver, left, right, pair, 20.0, 20.001)  # 1 ms apart: not a pair for exact sync
    time.sleep(1.0)
    assert matches == []
    _stereo_pair(driver, left, right, pair, 21.0, 21.0)
    _wait_count(driver, matches, 1)
    msg = matches[0][1]
    assert msg.header0.stamp == msg.header1.stamp == stamp(21.0)
    assert_same_matches(msg, matcher.match(*pair))


@pytest.mark.parametrize("remap", ["image:=/camera/image", "image/compressed:=/camera/image/compressed"])
def test_compressed_input(live, frames, remap):
    """Either remap works, as with image_transport: the base topic, or the compressed topic itself."""
    node, driver = live("-p", "mode:=sequence", "-p", "image_transport:=compressed", "-p", "qos_reliability:=reliable",
                        "-r", remap)
    publisher = driver.publisher(CompressedImage, "/camera/image/compressed")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    driver.wait_for_subscribers(publisher)
    images = frames[:3]
    _feed_sequence(driver, publisher, matches, images, make=compressed_message)  # PNG: lossless
    assert len(matches) == 2
    sequence = _sequence_matcher(images[0])
    for i, (_, msg) in enumerate(matches, start=1):
        assert_same_matches(msg, sequence.match_next(images[i]))


def test_overlay_is_drawn_only_while_someone_subscribes(live, frames):
    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable")
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    diagnostics, _ = driver.collect(DiagnosticArray, "/diagnostics")
    driver.wait_for_subscribers(publisher)
    _feed_sequence(driver, publisher, matches, frames[:3], start_s=100.0)
    time.sleep(1.5)
    assert _values(_statuses(diagnostics)[-1])["overlays total"] == "0"

    overlays, subscription = driver.collect(Image, "/matcher/overlay")
    overlay_publisher_seen = time.monotonic() + 30
    while driver.node.count_publishers("/matcher/overlay") < 1 and time.monotonic() < overlay_publisher_seen:
        time.sleep(0.05)
    time.sleep(1.0)  # let the node's publisher see the new subscription
    for i, image in enumerate(frames[3:6]):
        publisher.publish(image_message(image, stamp(101.0 + 0.1 * i)))
        _wait_count(driver, overlays, i + 1, what="overlay")
    picture = overlays[-1][1]
    assert picture.encoding == "bgr8" and picture.height >= 480 and picture.width >= 640
    assert picture.header.stamp == stamp(101.2)

    driver.node.destroy_subscription(subscription)
    time.sleep(1.5)
    diagnostics.clear()
    _wait_count(driver, diagnostics, 1, what="diagnostics")
    before = int(_values(_statuses(diagnostics)[-1])["overlays total"])
    for i, image in enumerate(frames[6:8]):
        publisher.publish(image_message(image, stamp(102.0 + 0.1 * i)))
        _wait_count(driver, matches, 6 + i)
    time.sleep(1.5)
    assert before == 3
    assert int(_values(_statuses(diagnostics)[-1])["overlays total"]) == before


def test_diagnostics_levels_follow_the_input(live, frames):
    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable", "-p", "input_timeout_s:=1.5")
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    diagnostics, _ = driver.collect(DiagnosticArray, "/diagnostics")
    driver.wait_for_subscribers(publisher)
    driver.wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "no images" in s.message for s in _statuses(diagnostics)),
                    10, "a 'no images' warning")
    status = _statuses(diagnostics)[-1]
    assert status.hardware_id == "coarse_loftr_ros/onnxruntime" and _values(status)["mode"] == "sequence"

    diagnostics.clear()
    for i in range(8):  # 5 Hz: well within what the node matches
        publisher.publish(image_message(frames[i], stamp(200.0 + 0.2 * i)))
        time.sleep(0.2)
    _wait_count(driver, matches, 7)
    assert _statuses(diagnostics)[-1].level == DiagnosticStatus.OK, _statuses(diagnostics)[-1]

    bad = image_message(frames[0], stamp(202.0))
    bad.data = bad.data[:1000]
    publisher.publish(bad)
    driver.wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "bad image" in s.message for s in _statuses(diagnostics)),
                    10, "a 'bad image' warning")


def _set_parameters(driver: Driver, **values) -> list:
    client = driver.node.create_client(SetParameters, "/matcher/set_parameters")
    assert client.wait_for_service(timeout_sec=30)
    parameters = []
    for name, value in values.items():
        if isinstance(value, float):
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        elif isinstance(value, str):
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        else:
            parameter_value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        parameters.append(Parameter(name=name, value=parameter_value))
    future = client.call_async(SetParameters.Request(parameters=parameters))
    driver.wait_for(future.done, 30, "the set_parameters response")
    driver.node.destroy_client(client)
    return future.result().results


def test_parameters_change_at_run_time_and_bad_changes_are_refused(live, frames, matcher):
    node, driver = live(*MODEL_ONLY, "-p", "mode:=sequence", "-p", "qos_reliability:=reliable")
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    driver.wait_for_subscribers(publisher)
    _feed_sequence(driver, publisher, matches, frames[:2])
    all_matches = len(matches[-1][1].confidence)

    result, = _set_parameters(driver, threshold=0.5)
    assert result.successful, result.reason
    result, = _set_parameters(driver, max_matches=25)
    assert result.successful, result.reason
    publisher.publish(image_message(frames[2], stamp(100.2)))
    _wait_count(driver, matches, 2)
    msg = matches[-1][1]
    expected = matcher.match(frames[1], frames[2])
    strong = int((expected.confidence >= 0.5).sum())
    assert len(msg.confidence) == min(25, strong) < all_matches
    assert min(msg.confidence) >= 0.5

    for change, words in [({"threshold": 1.5}, "threshold"), ({"max_matches": -1}, "max_matches"),
                          ({"time_budget_ms": -1.0}, "time_budget_ms"), ({"min_fine_score": 1.5}, "min_fine_score"),
                          ({"mode": "stereo"}, "read-only")]:
        result, = _set_parameters(driver, **change)
        assert not result.successful and words in result.reason, (change, result.reason)
    results = _set_parameters(driver, max_matches=0, threshold=0.0, time_budget_ms=250.0)
    assert [r.successful for r in results] == [True, True, True]
    publisher.publish(image_message(frames[3], stamp(100.3)))
    _wait_count(driver, matches, 3)
    assert_same_matches(matches[-1][1], matcher.match(frames[2], frames[3]))
    assert node.process.poll() is None


@pytest.mark.parametrize("arguments, named", [
    (["-p", "no_such_param:=3"], "no_such_param"),
    (["-p", "threshold:=1.5"], "threshold"),
    (["-p", "threshold:=.nan"], "threshold"),
    (["-p", "max_matches:=-1"], "max_matches"),
    (["-p", "mode:=mono"], "mode"),
    (["-p", "slop_s:=2"], "slop_s"),
    (["-p", "threshold:=2"], "threshold"),  # an integer, out of range
    (["-p", "max_gap_s:=-1"], "max_gap_s"),
    (["-p", "model:=/nonexistent/model.onnx"], "/nonexistent/model.onnx"),
])
def test_bad_parameters_end_with_one_fatal_line_and_exit_1(tmp_path, arguments, named):
    node = NodeProcess(arguments, next_domain_id(), tmp_path / "node.log")
    returncode = node.process.wait(timeout=120)
    lines = node.log().strip().splitlines()
    assert returncode == 1, node.log()
    assert len(lines) == 1 and "[FATAL]" in lines[0] and named in lines[0], node.log()


def test_integers_for_double_parameters_at_start_and_at_run_time(live, frames):
    """`-p threshold:=1` (an int) starts the node; an int through set_parameters is taken too;
    an unknown name is refused with a reason that names it."""
    node, driver = live(*MODEL_ONLY, "-p", "mode:=sequence", "-p", "qos_reliability:=reliable", "-p", "threshold:=1",
                        "-p", "max_gap_s:=0", "-p", "slop_s:=0")
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    driver.wait_for_subscribers(publisher)
    _feed_sequence(driver, publisher, matches, frames[:2])
    assert all(c >= 1.0 for c in matches[-1][1].confidence)  # threshold 1: only certain matches, if any
    result, = _set_parameters(driver, threshold=0)  # an int for a double, at run time
    assert result.successful, result.reason
    publisher.publish(image_message(frames[2], stamp(100.2)))
    _wait_count(driver, matches, 2)
    assert len(matches[-1][1].confidence) > 20
    result, = _set_parameters(driver, threshhold=0.5)
    assert not result.successful and "threshhold" in result.reason, result.reason
    result, = _set_parameters(driver, threshold="high")
    assert not result.successful and "threshold" in result.reason, result.reason
    assert node.process.poll() is None


def test_a_parameters_file_is_read_and_a_typo_in_it_is_fatal(live, tmp_path):
    node, driver = live("--params-file", str(REPO / "config" / "desktop.yaml"), "-p", "mode:=sequence")
    assert "sequence mode on /image" in node.log()
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**:\n  ros__parameters:\n    mode: sequence\n    threshhold: 0.5\n")
    bad = NodeProcess(["--params-file", str(typo)], next_domain_id(), tmp_path / "typo.log")
    assert bad.process.wait(timeout=120) == 1
    lines = bad.log().strip().splitlines()
    assert len(lines) == 1 and "[FATAL]" in lines[0] and "threshhold" in lines[0], bad.log()


def test_bad_image_messages_are_logged_and_skipped(live, frames, matcher):
    node, driver = live(*MODEL_ONLY, "-p", "mode:=sequence", "-p", "qos_reliability:=reliable")
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    diagnostics, _ = driver.collect(DiagnosticArray, "/diagnostics")
    driver.wait_for_subscribers(publisher)
    _feed_sequence(driver, publisher, matches, frames[:2])

    truncated = image_message(frames[2], stamp(100.2))
    truncated.data = truncated.data[: len(truncated.data) // 2]
    unknown = image_message(frames[2], stamp(100.3))
    unknown.encoding = "weird16"
    empty = image_message(frames[2], stamp(100.4))
    empty.width = empty.height = empty.step = 0
    empty.data = b""
    huge = image_message(np.zeros((3000, 4000), np.uint8), stamp(100.5))
    huge.height = 3000  # 4000x3000 mono8 claimed, 1000 rows of data sent
    huge.data = huge.data[: 4000 * 1000]
    for i, bad in enumerate([truncated, unknown, empty, huge]):
        publisher.publish(bad)
        time.sleep(0.5)
        publisher.publish(image_message(frames[2 + i], stamp(101.0 + i)))
        _wait_count(driver, matches, 2 + i)
    time.sleep(1.5)
    log = node.log()
    warnings = [line for line in log.splitlines() if "[WARN]" in line and "skipped an image message" in line]
    assert len(warnings) >= 3, log  # one line per kind of problem (numbers aside)
    assert _values(_statuses(diagnostics)[-1])["bad messages total"] == "4"
    # The sequence went on from the last good frame each time.
    assert_same_matches(matches[-1][1], matcher.match(frames[4], frames[5]))
    assert node.process.poll() is None


def test_a_real_4000x3000_image_is_matched_in_original_pixels(live, frames):
    import cv2

    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable")
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    driver.wait_for_subscribers(publisher)
    big = [cv2.resize(frame, (4000, 3000), interpolation=cv2.INTER_LINEAR) for frame in frames[:2]]
    _feed_sequence(driver, publisher, matches, big)
    msg = matches[0][1]
    keypoints = np.asarray(msg.keypoints1).reshape(-1, 2)
    assert (msg.image1_width, msg.image1_height) == (4000, 3000) and len(keypoints) > 20
    assert keypoints[:, 0].max() > 2000 and keypoints[:, 1].max() > 1500  # not in model-input pixels


def test_max_image_pixels_refuses_a_real_large_image_and_the_stream_goes_on(live, frames):
    import cv2

    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable", "-p", "max_image_pixels:=10000000")
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    driver.wait_for_subscribers(publisher)
    _feed_sequence(driver, publisher, matches, frames[:2])
    publisher.publish(image_message(cv2.resize(frames[2], (4000, 3000)), stamp(100.2)))  # 12 MP > 10 MP
    time.sleep(1.0)
    publisher.publish(image_message(frames[3], stamp(100.3)))
    _wait_count(driver, matches, 2)
    assert matches[-1][1].header0.stamp == stamp(100.1)  # the large frame was skipped, not matched
    warnings = [line for line in node.log().splitlines() if "[WARN]" in line and "skipped an image message" in line]
    assert len(warnings) == 1 and "4000" in warnings[0], node.log()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_end_the_node_with_exit_0(live, frames, sig):
    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable")
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    driver.wait_for_subscribers(publisher)
    _feed_sequence(driver, publisher, matches, frames[:2])
    for i in range(5):  # a signal while frames keep arriving
        publisher.publish(image_message(frames[i], stamp(300.0 + 0.05 * i)))
    returncode = node.stop(sig)
    assert returncode == 0, node.log()
    assert "Traceback" not in node.log()


def _feeder(tmp_path: Path, domain_id: int, *arguments: str) -> subprocess.Popen:
    """scripts/publish_images.py in its own process (its own interpreter lock, as a camera driver)."""
    from node_live_support import ros_environment

    log = open(tmp_path / "feeder.log", "w")
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / "publish_images.py"), *arguments],
                            env=ros_environment(domain_id), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _frame_folder(tmp_path: Path, name: str, images: list[np.ndarray]) -> Path:
    import cv2

    folder = tmp_path / name
    folder.mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return folder


def test_the_feeder_plays_an_image_folder_to_the_node(live, frames, tmp_path):
    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable", "-r", "image:=/camera/image_raw")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    folder = _frame_folder(tmp_path, "frames", frames[:4])
    # Looped, so that a first frame lost to DDS discovery still leaves pairs to match.
    feeder = _feeder(tmp_path, node.domain_id, str(folder), "--topic", "/camera/image_raw", "--rate", "4", "--reliable",
                     "--wait", "30", "--loop", "--count", "12")
    assert feeder.wait(timeout=120) == 0, (tmp_path / "feeder.log").read_text()
    assert "published 12 frames" in (tmp_path / "feeder.log").read_text()
    _wait_count(driver, matches, 3)
    assert all(m.header.frame_id == "camera" and len(m.confidence) > 20 for _, m in matches)


def test_the_feeder_plays_a_rosbag2_with_its_recorded_stamps(live, frames, tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    RosImage, Header, Time = store.types["sensor_msgs/msg/Image"], store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    bag = tmp_path / "bag"
    with Writer(bag, version=8) as writer:
        connection = writer.add_connection("/cam/image_raw", RosImage.__msgtype__, typestore=store)
        for i, image in enumerate(frames[:4]):
            t = 1_000_000_000 * 50 + i * 100_000_000
            msg = RosImage(header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="bagcam"),
                           height=480, width=640, encoding="bgr8", is_bigendian=0, step=640 * 3,
                           data=np.ascontiguousarray(image).reshape(-1))
            writer.write(connection, t, store.serialize_cdr(msg, msg.__msgtype__))
    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    # Three loops of the bag: its stamps jump back at each loop and the node restarts the sequence.
    feeder = _feeder(tmp_path, node.domain_id, str(bag), "--bag-topic", "/cam/image_raw=/image", "--rate", "0.5",
                     "--reliable", "--wait", "30", "--loop", "--count", "12")
    assert feeder.wait(timeout=120) == 0, (tmp_path / "feeder.log").read_text()
    assert "published 12 messages" in (tmp_path / "feeder.log").read_text()
    _wait_count(driver, matches, 3)
    pairs = {(m.header0.stamp.nanosec, m.header1.stamp.nanosec) for _, m in matches}
    assert pairs <= {(0, 100_000_000), (100_000_000, 200_000_000), (200_000_000, 300_000_000)}, pairs
    assert all(m.header1.stamp.sec == 50 for _, m in matches)
    assert matches[0][1].header.frame_id == "bagcam"


@pytest.mark.slow
def test_a_30_hz_flood_drops_stale_pairs_without_queueing_and_with_flat_memory(live, frames, tmp_path):
    """3000 stereo pairs at 30 Hz, faster than the node matches pairs on a small CPU: the node
    keeps up by dropping stale pairs (counted) instead of queueing them, and its memory stays flat.

    What is asserted is what the node promises, never a rate, a delivery share or a latency bound
    (those depend on the machine's load; scripts/node_throughput.py measures them): every image
    that arrived is accounted for (paired, dropped unpaired, or still waiting for a partner),
    every pair formed is matched, dropped as stale or still waiting (at most one: no queue), and
    the pairs published come in the order they were taken (no backlog served late)."""
    sync_queue_size = 5
    node, driver = live("-p", "mode:=stereo", "-p", "sync:=exact", "-p", "threads:=1",
                        "-p", f"sync_queue_size:={sync_queue_size}")  # sensor-data QoS
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    diagnostics, _ = driver.collect(DiagnosticArray, "/diagnostics")
    left = _frame_folder(tmp_path, "left", frames[:8])
    right = _frame_folder(tmp_path, "right", frames[1:8] + frames[:1])
    total = 3000
    feed_started = time.time()
    feeder = _feeder(tmp_path, node.domain_id, str(left), "--topic", "/image0", "--right", str(right),
                     "--right-topic", "/image1", "--mono", "--rate", "30", "--count", str(total), "--loop", "--wait", "30")
    rss = []
    while feeder.poll() is None:
        rss.append(node.rss_mb())
        time.sleep(5.0)
    feed_ended = time.time()
    log = (tmp_path / "feeder.log").read_text()
    assert feeder.returncode == 0 and f"published {total} pairs" in log, log
    # Quiet: the node finishes the pair in hand and the one waiting, then publishes nothing more.
    previous = -1
    while previous != len(matches):
        previous = len(matches)
        time.sleep(3.0)
    rss.append(node.rss_mb())
    diagnostics.clear()
    _wait_count(driver, diagnostics, 1, what="diagnostics")
    values = _values(_statuses(diagnostics)[-1])
    images, unpaired = int(values["images total"]), int(values["unpaired images dropped total"])
    pairs, processed, dropped = int(values["inputs total"]), int(values["processed total"]), int(values["dropped stale total"])

    assert 0 < images <= 2 * total, values
    # Every image that arrived: in a pair, dropped without partner, or still waiting for one.
    assert 2 * pairs + unpaired <= images <= 2 * pairs + unpaired + 2 * sync_queue_size, values
    # Every pair: matched and published, or replaced by a newer one (counted); none left over
    # once the input stopped, so nothing queued.
    assert processed > 0 and dropped > 0, values  # it matches under the flood, and drops instead of queueing
    assert processed + dropped == pairs, values
    # Behind, the node sheds the steps after the model's first run before more frames: each pair
    # taken after a drop is matched once and counted. At most one per drop, and one at least.
    shed = int(values["steps shed total"])
    assert 1 <= shed <= min(dropped, processed), values
    assert int(values["bad messages total"]) == 0 and int(values["failures total"]) == 0, values
    # Each MatchArray published is of a newer pair than every one before it.
    stamps = [(m.header1.stamp.sec, m.header1.stamp.nanosec) for _, m in matches]
    assert stamps == sorted(set(stamps)), "a pair was published after a newer one"
    assert all(m.header0.stamp == m.header1.stamp for _, m in matches)  # exact sync
    # Matching went on through the flood, not only at its start: pairs taken in its second half
    # (the feeder stamps with this machine's clock) were matched too.
    middle = (feed_started + feed_ended) / 2
    assert any(sec + nanosec * 1e-9 > middle for sec, nanosec in stamps), "no pair of the flood's second half matched"
    warm = np.median(rss[1:4])  # after the first few hundred pairs (allocator and model warm-up)
    assert rss[-1] - warm < 60, f"RSS grew from {warm:.0f} MB to {rss[-1]:.0f} MB: {rss}"
    assert node.process.poll() is None


def test_sequence_restarts_across_a_gap_and_a_change_of_size(live, frames):
    """The issue's stream: 640x480 frames, 9 s of silence, then 1280x960 frames. Nothing is paired
    across the gap or the size change; each restart is counted by reason in /diagnostics."""
    import cv2

    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable", "-p", "max_gap_s:=1.0",
                        "-p", "input_timeout_s:=60.0")
    publisher = driver.publisher(Image, "/image")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    diagnostics, _ = driver.collect(DiagnosticArray, "/diagnostics")
    driver.wait_for_subscribers(publisher)
    driver.wait_for(lambda: _statuses(diagnostics), 10, "a first status")
    first = _statuses(diagnostics)[0]  # before any image: WARN, not OK "matching at 0.0 Hz"
    assert first.level == DiagnosticStatus.WARN and first.message == "waiting for images", first
    _feed_sequence(driver, publisher, matches, frames[:2], start_s=100.0)  # 100.0, 100.1: one pair
    publisher.publish(image_message(frames[2], stamp(109.1)))  # 9 s later: a restart (gap)
    time.sleep(1.0)
    large = [cv2.resize(frame, (1280, 960)) for frame in frames[3:5]]
    publisher.publish(image_message(large[0], stamp(109.2)))  # another size: a restart (size)
    time.sleep(1.0)
    publisher.publish(image_message(large[1], stamp(109.3)))  # pairs with the first large frame
    _wait_count(driver, matches, 2)
    time.sleep(1.5)
    assert len(matches) == 2
    first, second = matches[0][1], matches[1][1]
    assert (first.header0.stamp, first.header1.stamp) == (stamp(100.0), stamp(100.1))
    assert (second.header0.stamp, second.header1.stamp) == (stamp(109.2), stamp(109.3))
    assert (second.image0_width, second.image0_height, second.image1_width) == (1280, 960, 1280)
    values = _values(_statuses(diagnostics)[-1])
    assert values["sequence restarts (gap) total"] == "1" and values["sequence restarts (size) total"] == "1", values
    assert values["sequence restarts (stamp_backwards) total"] == "0" and values["sequence restarts (frame_id) total"] == "0"
    # Both pairs are within the 10 s window: what they cost is published, within the default budget.
    assert 1.0 <= float(values["model runs mean"]) <= int(values["model runs max"]) <= 3, values
    assert float(values["latency p95 (ms)"]) <= float(values["latency max (ms)"]), values


KITTI = REPO.parent / "shared" / "data" / "kitti_seq_dev"


def _essential_from_one_message(msg):
    """docs/message.md's consumer example: an essential matrix from one MatchArray alone."""
    import cv2

    points0 = np.frombuffer(msg.keypoints0, dtype=np.float32).reshape(-1, 2).astype(np.float64)
    points1 = np.frombuffer(msg.keypoints1, dtype=np.float32).reshape(-1, 2).astype(np.float64)
    K0 = np.asarray(msg.camera_info0.k, dtype=np.float64).reshape(3, 3)
    K1 = np.asarray(msg.camera_info1.k, dtype=np.float64).reshape(3, 3)
    if not K0.any() or not K1.any() or len(points0) < 5:
        return None  # no calibration with these matches (a zero CameraInfo), or too few matches
    # Normalised image coordinates (undistorted), so one identity camera matrix serves both images.
    normalised0 = cv2.undistortPoints(points0.reshape(-1, 1, 2), K0, np.asarray(msg.camera_info0.d)).reshape(-1, 2)
    normalised1 = cv2.undistortPoints(points1.reshape(-1, 1, 2), K1, np.asarray(msg.camera_info1.d)).reshape(-1, 2)
    E, inliers = cv2.findEssentialMat(normalised0, normalised1, np.eye(3), method=cv2.RANSAC, prob=0.999,
                                      threshold=1.0 / K1[0, 0])
    return E, inliers


def test_camera_info_rides_with_the_matches_and_gives_an_essential_matrix(live, tmp_path):
    """Real KITTI frames and their cameras.json through publish_images.py --camera: each MatchArray
    carries the published K, and the essential matrix comes from that one message alone."""
    import cv2

    from coarse_loftr_ros.ros.camera_info import load_cameras

    files = sorted((KITTI / "images").glob("*.png"))[:4]
    if not files or not (KITTI / "cameras.json").is_file():
        pytest.skip(f"{KITTI} is absent: this test needs ../shared beside the checkout")
    camera = load_cameras(KITTI / "cameras.json")["camera"]
    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable", "-p", "use_camera_info:=true",
                        "-p", "max_gap_s:=0", "-r", "image:=/kitti/image_raw", "-r", "camera_info:=/kitti/camera_info")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    diagnostics, _ = driver.collect(DiagnosticArray, "/diagnostics")
    driver.wait_for(lambda: _statuses(diagnostics), 10, "a first status")
    assert _values(_statuses(diagnostics)[-1])["camera_info"] == "waiting for /kitti/camera_info"
    folder = _frame_folder(tmp_path, "kitti", [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])
    feeder = _feeder(tmp_path, node.domain_id, str(folder), "--topic", "/kitti/image_raw", "--camera",
                     str(KITTI / "cameras.json"), "--mono", "--rate", "2", "--reliable", "--wait", "30", "--loop",
                     "--count", "8")
    assert feeder.wait(timeout=120) == 0, (tmp_path / "feeder.log").read_text()
    _wait_count(driver, matches, 2)
    with_k = [m for _, m in matches if np.any(m.camera_info1.k)]
    assert with_k, "no MatchArray carried the CameraInfo"
    msg = with_k[-1]
    assert (msg.camera_info1.width, msg.camera_info1.height) == (camera.width, camera.height) == (msg.image1_width, msg.image1_height)
    np.testing.assert_array_equal(np.asarray(msg.camera_info1.k).reshape(3, 3), camera.matrix)
    np.testing.assert_array_equal(np.asarray(msg.camera_info0.k).reshape(3, 3), camera.matrix)
    assert msg.camera_info1.header.frame_id == "camera"
    E, inliers = _essential_from_one_message(msg)
    assert E is not None and E.shape == (3, 3), E
    singular = np.linalg.svd(E, compute_uv=False)
    assert singular[2] < 1e-6 * singular[0] and abs(singular[0] - singular[1]) < 1e-3 * singular[0]  # an essential matrix
    assert int(inliers.sum()) > 0.5 * len(msg.confidence)
    diagnostics.clear()
    _wait_count(driver, diagnostics, 1, what="diagnostics")
    values = _values(_statuses(diagnostics)[-1])
    assert values["camera_info"] == "received" and values["camera_info size mismatches total"] == "0", values


def test_a_camera_info_of_another_size_gives_a_zero_one_logged_and_counted(live, frames):
    """640x480 images with a CameraInfo for 1226x370: published with a zero CameraInfo, never the wrong one."""
    from sensor_msgs.msg import CameraInfo

    from coarse_loftr_ros.ros.camera_info import PinholeCamera, camera_info_fields

    node, driver = live("-p", "mode:=sequence", "-p", "qos_reliability:=reliable", "-p", "use_camera_info:=true")
    publisher, info_publisher = driver.publisher(Image, "/image"), driver.publisher(CameraInfo, "/camera_info")
    matches, _ = driver.collect(MatchArray, "/matcher/matches")
    diagnostics, _ = driver.collect(DiagnosticArray, "/diagnostics")
    driver.wait_for_subscribers(publisher)
    driver.wait_for_subscribers(info_publisher)
    info = CameraInfo(**camera_info_fields(PinholeCamera(1226, 370, 707.0, 707.0, 601.0, 183.0)))
    info_publisher.publish(info)
    time.sleep(0.5)
    _feed_sequence(driver, publisher, matches, frames[:3])
    time.sleep(1.5)
    assert all(not np.any(m.camera_info0.k) and not np.any(m.camera_info1.k) for _, m in matches)
    assert all(m.camera_info1.width == 0 for _, m in matches)
    values = _values(_statuses(diagnostics)[-1])
    assert int(values["camera_info size mismatches total"]) == 2 * len(matches), values
    warnings = [line for line in node.log().splitlines() if "[WARN]" in line and "CameraInfo" in line]
    assert len(warnings) == 1 and "640x480" in warnings[0] and "1226x370" in warnings[0], node.log()  # throttled
    assert node.process.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_feeder_stops_cleanly_on_a_signal(frames, tmp_path, sig):
    """publish_images.py --loop on real frames, stopped by Ctrl-C (or SIGTERM): exit 0, no traceback."""
    folder = _frame_folder(tmp_path, "frames", frames[:3])
    feeder = _feeder(tmp_path, next_domain_id(), str(folder), "--loop", "--rate", "20", "--wait", "0")
    log_path = tmp_path / "feeder.log"
    deadline = time.monotonic() + 60.0  # a loaded machine can take long to import rclpy
    while "publishing anyway" not in log_path.read_text() and feeder.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # until the feeder is past its set-up and in its loop
    time.sleep(1.0)
    assert feeder.poll() is None and "publishing anyway" in log_path.read_text(), log_path.read_text()
    feeder.send_signal(sig)
    try:
        returncode = feeder.wait(timeout=60)
    except subprocess.TimeoutExpired:
        feeder.kill()
        feeder.wait()
        raise AssertionError(f"the feeder did not stop within 60 s of {sig.name}:\n{log_path.read_text()}") from None
    log = log_path.read_text()
    assert returncode == 0, log
    assert "Traceback" not in log and "RCLError" not in log, log
    assert "published " in log and " frames in " in log, log
