"""The node's diagnostics: rates, latency, drops and the level they lead to."""

from __future__ import annotations

import threading

import pytest

from coarse_loftr_ros.ros.node_diagnostics import MatcherStatistics


def steady(stats: MatcherStatistics, start: float, seconds: float, input_hz: float, every_nth: int, latency: float, matches: int) -> float:
    """Feed ``input_hz`` inputs per second, processing every ``every_nth`` one."""
    count = int(seconds * input_hz)
    t = start
    for i in range(count):
        t = start + i / input_hz
        stats.record_input(now=t)
        if i % every_nth == 0:
            stats.record_processed(latency, matches, now=t + latency / 1000)
        else:
            stats.record_dropped()
    return t


def test_healthy_stream_is_ok_with_rates_and_latency():
    stats = MatcherStatistics(window_s=10.0, start_time=0.0)
    end = steady(stats, 0.0, 20.0, input_hz=30.0, every_nth=1, latency=25.0, matches=300)
    summary = stats.summary(now=end + 0.03)
    assert summary.level == "ok"
    assert float(summary.values["input rate (Hz)"]) == pytest.approx(30.0, abs=0.2)
    assert float(summary.values["output rate (Hz)"]) == pytest.approx(30.0, abs=0.2)
    assert summary.values["latency mean (ms)"] == "25.0" and summary.values["matches last"] == "300"
    assert summary.values["dropped stale total"] == "0"


def test_latency_p95_and_model_runs_cover_the_window():
    """The latency's 95th percentile and the model runs per pair (what the steps after the model
    cost) are over the last window_s seconds: an older slow pair leaves them."""
    stats = MatcherStatistics(window_s=10.0, start_time=0.0)
    stats.record_processed(500.0, 80, model_runs=3, now=0.5)  # a searched pair, early
    for i in range(1, 101):  # 1..100 ms, one model run, then every tenth pair a second run
        stats.record_processed(float(i), 300, model_runs=2 if i % 10 == 0 else 1, now=10.0 + i * 0.05)
    values = stats.summary(now=15.1).values
    assert values["latency p95 (ms)"] == "95.0" and values["latency max (ms)"] == "100.0"
    assert values["model runs mean"] == "1.10" and values["model runs max"] == "2"
    stats.record_processed(7.0, 300, now=15.2)  # one run unless told
    assert stats.summary(now=15.3).values["model runs mean"] == f"{111 / 101:.2f}"
    empty = MatcherStatistics(start_time=0.0).summary(now=1.0).values
    assert empty["latency p95 (ms)"] == empty["model runs mean"] == empty["model runs max"] == "-"


def test_slow_matching_warns_about_dropped_pairs():
    stats = MatcherStatistics(window_s=5.0, start_time=0.0)
    end = steady(stats, 0.0, 10.0, input_hz=30.0, every_nth=3, latency=90.0, matches=150)
    summary = stats.summary(now=end)
    assert summary.level == "warn" and "stale pairs are dropped" in summary.message
    assert int(summary.values["dropped stale total"]) == 200
    assert float(summary.values["output rate (Hz)"]) == pytest.approx(10.0, abs=0.3)


def test_silence_warns_after_the_timeout():
    stats = MatcherStatistics(window_s=5.0, start_time=0.0)
    end = steady(stats, 0.0, 2.0, input_hz=10.0, every_nth=1, latency=10.0, matches=50)
    assert stats.summary(now=end + 1.0, input_timeout_s=3.0).level == "ok"
    summary = stats.summary(now=end + 4.0, input_timeout_s=3.0)
    assert summary.level == "warn" and summary.message.startswith("no images for 4.0 s")
    # Nothing at all since start also warns.
    fresh = MatcherStatistics(start_time=100.0)
    assert fresh.summary(now=110.0, input_timeout_s=5.0).level == "warn"


def test_bad_messages_warn_and_failures_are_errors_until_they_leave_the_window():
    stats = MatcherStatistics(window_s=5.0, start_time=0.0)
    steady(stats, 0.0, 3.0, input_hz=10.0, every_nth=1, latency=10.0, matches=50)
    stats.record_bad_message(now=2.5)
    assert stats.summary(now=3.0).level == "warn"
    stats.record_failure(now=2.9)
    summary = stats.summary(now=3.0)
    assert summary.level == "error" and summary.values["failures total"] == "1"
    steady(stats, 3.0, 6.0, input_hz=10.0, every_nth=1, latency=10.0, matches=50)
    assert stats.summary(now=9.0).level == "ok"  # both events are older than the window
    assert stats.summary(now=9.0).values["bad messages total"] == "1"


def test_counters_are_thread_safe():
    stats = MatcherStatistics()

    def work():
        for _ in range(5_000):
            stats.record_input()
            stats.record_processed(1.0, 1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.inputs == stats.processed == 20_000


def test_stereo_images_that_never_pair_warn_with_their_own_message():
    stats = MatcherStatistics(window_s=5.0, start_time=0.0)
    for i in range(40):  # images from both cameras keep coming, none pairs
        stats.record_image(now=i * 0.1)
        stats.record_unpaired(1)
    summary = stats.summary(now=4.0, input_timeout_s=3.0)
    assert summary.level == "warn" and summary.message.startswith("images arrive but none paired for 4.0 s")
    assert "slop_s" in summary.message
    assert summary.values["unpaired images dropped total"] == "40" and summary.values["images total"] == "40"
    # Without any image at all it is the plain silence warning.
    assert MatcherStatistics(start_time=0.0).summary(now=10.0).message.startswith("no images")


def test_overlays_are_counted():
    stats = MatcherStatistics(start_time=0.0)
    stats.record_overlay()
    stats.record_overlay()
    assert stats.summary(now=1.0).values["overlays total"] == "2"


def test_the_node_logs_each_kind_of_bad_message_once_per_period():
    from coarse_loftr_ros.ros.node import _ProblemThrottle  # importable without ROS

    throttle = _ProblemThrottle(period_s=5.0)
    assert throttle.should_log("Image data is 100 bytes, expected 921600", now=0.0)
    assert not throttle.should_log("Image data is 200 bytes, expected 921600", now=1.0)  # same kind, numbers aside
    assert throttle.should_log("unknown encoding 'weird16'", now=1.0)  # another kind: at once
    assert throttle.should_log("Image data is 300 bytes, expected 921600", now=5.5)  # the period is over


def test_before_any_image_it_warns_waiting_for_images():
    stats = MatcherStatistics(start_time=0.0)
    summary = stats.summary(now=1.0, input_timeout_s=5.0)
    assert summary.level == "warn" and summary.message == "waiting for images"
    stats.record_image(now=1.5)
    stats.record_input(now=1.5)
    assert stats.summary(now=2.0, input_timeout_s=5.0).message != "waiting for images"


def test_sequence_restarts_are_counted_by_reason():
    from coarse_loftr_ros.ros.pairing import RESTART_REASONS

    stats = MatcherStatistics(start_time=0.0)
    stats.record_restart("gap")
    stats.record_restart("gap")
    stats.record_restart("size")
    values = stats.summary(now=1.0, restarts=True).values
    assert {key for key in values if key.startswith("sequence restarts")} == {
        f"sequence restarts ({reason}) total" for reason in RESTART_REASONS}
    assert values["sequence restarts (gap) total"] == "2" and values["sequence restarts (size) total"] == "1"
    assert values["sequence restarts (frame_id) total"] == "0"
    assert not any(key.startswith("sequence restarts") for key in stats.summary(now=1.0).values)  # stereo
    with pytest.raises(ValueError, match="unknown restart reason"):
        stats.record_restart("cosmic rays")


def test_camera_info_waiting_and_size_mismatches_warn():
    stats = MatcherStatistics(window_s=5.0, start_time=0.0)
    end = steady(stats, 0.0, 2.0, input_hz=10.0, every_nth=1, latency=10.0, matches=50)
    waiting = stats.summary(now=end, camera_info_waiting=["/camera_info"], camera_info=True)
    assert waiting.level == "warn" and waiting.message.startswith("waiting for camera_info on /camera_info")
    assert waiting.values["camera_info"] == "waiting for /camera_info"
    assert waiting.values["camera_info size mismatches total"] == "0"
    assert stats.summary(now=end, camera_info=True).level == "ok"
    assert stats.summary(now=end, camera_info=True).values["camera_info"] == "received"
    stats.record_camera_info_mismatch(now=end)
    mismatch = stats.summary(now=end + 0.1, camera_info=True)
    assert mismatch.level == "warn" and "differ in size from their camera_info" in mismatch.message
    assert mismatch.values["camera_info size mismatches total"] == "1"
    steady(stats, end + 0.1, 6.0, input_hz=10.0, every_nth=1, latency=10.0, matches=50)
    assert stats.summary(now=end + 6.0, camera_info=True).level == "ok"  # out of the window
    assert "camera_info" not in stats.summary(now=end).values  # use_camera_info off
