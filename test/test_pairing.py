"""Stereo time pairing, sequence keyframe policies and the newest-only mailbox."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coarse_loftr_ros.ros.pairing import (
    RESTART_REASONS,
    Frame,
    LatestOnlySlot,
    SequencePairer,
    StereoPairer,
    StreamKey,
    restart_reason,
    stamp_to_ns,
)

MS = 1_000_000  # nanoseconds


def stamps_of(pair):
    return pair.frame0.stamp_ns, pair.frame1.stamp_ns


def test_stamp_to_ns():
    assert stamp_to_ns(SimpleNamespace(sec=12, nanosec=345)) == 12_000_000_345
    assert stamp_to_ns(SimpleNamespace(sec=0, nanosec=999_999_999)) == 999_999_999


# ----- stereo -----


def test_exact_pairs_only_identical_stamps():
    pairer = StereoPairer(exact=True)
    assert pairer.push0(Frame(100, "L0")) is None
    pair = pairer.push1(Frame(100, "R0"))
    assert pair.frame0.data == "L0" and pair.frame1.data == "R0" and pair.skew_ns == 0
    assert pairer.push0(Frame(200, "L1")) is None
    assert pairer.push1(Frame(201, "R1")) is None  # 1 ns apart: no pair
    assert pairer.dropped == 1  # L1 can never pair now
    assert pairer.waiting == (0, 1)


@pytest.mark.parametrize("order", ["left_first", "right_first", "left_burst"])
def test_approximate_pairs_a_30hz_rig_with_offset_in_any_arrival_order(order):
    period, offset = 33 * MS, 3 * MS
    left = [Frame(i * period, f"L{i}") for i in range(10)]
    right = [Frame(i * period + offset, f"R{i}") for i in range(10)]
    if order == "left_first":
        arrivals = [x for i in range(10) for x in ((0, left[i]), (1, right[i]))]
    elif order == "right_first":
        arrivals = [x for i in range(10) for x in ((1, right[i]), (0, left[i]))]
    else:  # the right camera's frames arrive two frames late
        arrivals = [(0, left[0]), (0, left[1])]
        arrivals += [x for i in range(8) for x in ((1, right[i]), (0, left[i + 2]))]
        arrivals += [(1, right[8]), (1, right[9])]
    pairer = StereoPairer(slop_s=0.010, queue_size=5)
    pairs = [p for camera, frame in arrivals if (p := pairer.push(camera, frame)) is not None]
    assert [(p.frame0.data, p.frame1.data) for p in pairs] == [(f"L{i}", f"R{i}") for i in range(10)]
    assert all(p.skew_ns == offset for p in pairs)
    assert pairer.dropped == 0 and pairer.waiting == (0, 0)


def test_a_frame_missing_on_one_camera_drops_its_partner():
    pairer = StereoPairer(slop_s=0.005)
    pairs = []
    for i in range(6):
        pairs.append(pairer.push0(Frame(i * 50 * MS, i)))
        if i != 2:  # camera 1 lost frame 2
            pairs.append(pairer.push1(Frame(i * 50 * MS + MS, i)))
    got = [(p.frame0.data, p.frame1.data) for p in pairs if p]
    assert got == [(0, 0), (1, 1), (3, 3), (4, 4), (5, 5)]
    assert pairer.dropped == 1


def test_closer_waiting_frame_wins_the_partner():
    pairer = StereoPairer(slop_s=0.040)
    pairer.push0(Frame(0, "old"))
    pairer.push0(Frame(30 * MS, "new"))
    pair = pairer.push1(Frame(28 * MS, "R"))
    assert (pair.frame0.data, pair.frame1.data) == ("new", "R")
    assert pairer.dropped == 1


def test_queues_are_bounded_when_stamps_never_meet():
    pairer = StereoPairer(slop_s=0.001, queue_size=3)
    for i in range(50):
        assert pairer.push0(Frame(i * MS, i)) is None
        assert max(pairer.waiting) <= 3
    assert pairer.waiting == (3, 0) and pairer.dropped == 47
    # A camera-1 frame far in the future flushes everything without pairing.
    assert pairer.push1(Frame(10**12, "far")) is None
    assert pairer.waiting == (0, 1) and pairer.dropped == 50


def test_stamp_going_backwards_resets_instead_of_pairing_across_the_jump():
    # A bag played with --loop: both cameras jump back to the start.
    pairer = StereoPairer(slop_s=0.01)
    pairer.push0(Frame(5_000 * MS, "L end"))
    assert pairer.push1(Frame(5_000 * MS, "R end")) is not None
    pairer.push0(Frame(5_033 * MS, "L unpaired"))
    assert pairer.push1(Frame(10 * MS, "R start")) is None  # camera 1 went back: reset
    assert pairer.resets == 1 and pairer.dropped == 1  # "L unpaired" was discarded
    pair = pairer.push0(Frame(10 * MS, "L start"))
    assert (pair.frame0.data, pair.frame1.data) == ("L start", "R start")


def test_repeated_stamp_on_one_camera_keeps_the_first():
    pairer = StereoPairer(slop_s=0.01)
    pairer.push0(Frame(MS, "a"))
    assert pairer.push0(Frame(MS, "b")) is None
    assert pairer.push1(Frame(MS, "R")).frame0.data == "a"
    assert pairer.dropped == 1


def test_invalid_stereo_arguments():
    with pytest.raises(ValueError):
        StereoPairer(queue_size=0)
    with pytest.raises(ValueError):
        StereoPairer(slop_s=-1)
    with pytest.raises(ValueError):
        StereoPairer().push(2, Frame(0, None))


@settings(max_examples=200, deadline=None)
@given(
    stamps0=st.lists(st.integers(0, 2_000), max_size=40),
    stamps1=st.lists(st.integers(0, 2_000), max_size=40),
    slop=st.integers(0, 100),
    queue_size=st.integers(1, 6),
    interleave=st.lists(st.booleans(), max_size=80),
)
def test_stereo_invariants_for_arbitrary_streams(stamps0, stamps1, slop, queue_size, interleave):
    streams = [sorted(set(stamps0)), sorted(set(stamps1))]
    pairer = StereoPairer(slop_s=slop / 1e9, queue_size=queue_size)
    cursor, pairs, choices = [0, 0], [], iter(interleave)
    while cursor[0] < len(streams[0]) or cursor[1] < len(streams[1]):
        camera = 0 if next(choices, True) else 1
        if cursor[camera] >= len(streams[camera]):
            camera = 1 - camera
        stamp = streams[camera][cursor[camera]]
        cursor[camera] += 1
        pair = pairer.push(camera, Frame(stamp, (camera, stamp)))
        assert max(pairer.waiting) <= queue_size
        if pair is not None:
            pairs.append(pair)
    for pair in pairs:
        assert pair.frame0.data[0] == 0 and pair.frame1.data[0] == 1
        assert abs(pair.skew_ns) <= slop
    for side in (0, 1):  # each frame used once, pairs in time order
        used = [(p.frame0, p.frame1)[side].stamp_ns for p in pairs]
        assert used == sorted(set(used))
    pushed = len(streams[0]) + len(streams[1])
    assert 2 * len(pairs) + pairer.dropped + sum(pairer.waiting) == pushed


@settings(max_examples=100, deadline=None)
@given(
    jitter=st.lists(st.tuples(st.integers(-4, 4), st.integers(-4, 4)), min_size=1, max_size=30),
    delays=st.lists(st.integers(0, 60), max_size=60),
)
def test_stereo_recovers_ground_truth_pairs_with_jitter_and_delayed_arrival(jitter, delays):
    # 30 ms period, stamps jittered by up to 4 ms, slop 10 ms (< half period): every
    # true pair must be found whatever the (bounded) arrival delays.
    period = 30
    events = []
    delay = iter(delays)
    last_arrival = [0, 0]  # each topic delivers in order (FIFO)
    for i, (j0, j1) in enumerate(jitter):
        for camera, j in ((0, j0), (1, j1)):
            stamp = i * period + j + 10
            arrival = max(last_arrival[camera], stamp + next(delay, 0))
            last_arrival[camera] = arrival
            events.append((arrival, camera, Frame(stamp, i)))
    events.sort(key=lambda e: e[0])
    pairer = StereoPairer(slop_s=10e-9, queue_size=5)
    found = [p for _, camera, frame in events if (p := pairer.push(camera, frame))]
    for pair in found:
        assert pair.frame0.data == pair.frame1.data
    # Arrival delays of up to 60 ms (two periods) fit in the queues: nothing is lost.
    assert len(found) == len(jitter)


# ----- sequence -----


def run_sequence(pairer: SequencePairer, n: int, matches=lambda ref, cur: 100):
    pairs = []
    for i in range(n):
        pair = pairer.push(Frame(i * MS, i))
        if pair is not None:
            pairs.append((pair.reference.data, pair.current.data))
            pairer.report_matches(matches(pair.reference.data, pair.current.data))
    return pairs


def test_previous_frame_policy():
    assert run_sequence(SequencePairer(), 5) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_keyframe_every_n_frames():
    pairs = run_sequence(SequencePairer(keyframe_every=3), 8)
    assert pairs == [(0, 1), (0, 2), (0, 3), (3, 4), (3, 5), (3, 6), (6, 7)]


def test_keyframe_replaced_when_matches_fall_below_threshold():
    # Matches decay with distance from the keyframe: 100 - 30 * frames apart.
    pairer = SequencePairer(keyframe_every=0, min_matches=50)
    pairs = run_sequence(pairer, 8, matches=lambda ref, cur: 100 - 30 * (cur - ref))
    assert pairs == [(0, 1), (0, 2), (2, 3), (2, 4), (4, 5), (4, 6), (6, 7)]
    assert pairer.keyframes == 4


def test_keyframe_replaced_when_the_match_score_falls_below_threshold():
    # The score decays with distance from the keyframe; the match count stays high (zoom views).
    pairer = SequencePairer(keyframe_every=0, min_score=0.25)
    pairs = []
    for i in range(8):
        pair = pairer.push(Frame(i * MS, i))
        if pair is not None:
            pairs.append((pair.reference.data, pair.current.data))
            pairer.report_matches(300, 0.5 - 0.1 * (pair.current.data - pair.reference.data))
    assert pairs == [(0, 1), (0, 2), (0, 3), (3, 4), (3, 5), (3, 6), (6, 7)]
    # No score reported (None): only the count rule could fire, and it is off.
    pairer = SequencePairer(keyframe_every=0, min_score=0.25)
    got = []
    for i in range(4):
        if (pair := pairer.push(Frame(i * MS, i))) is not None:
            got.append((pair.reference.data, pair.current.data))
            pairer.report_matches(300)
    assert got == [(0, 1), (0, 2), (0, 3)]


def test_both_rules_together_and_without_feedback():
    pairer = SequencePairer(keyframe_every=4, min_matches=50)
    pairs = run_sequence(pairer, 7, matches=lambda ref, cur: 10 if cur == 2 else 90)
    assert pairs == [(0, 1), (0, 2), (2, 3), (2, 4), (2, 5), (2, 6)]
    # Without report_matches only the every-N rule applies.
    pairer = SequencePairer(keyframe_every=2, min_matches=50)
    got = [(p.reference.data, p.current.data) for i in range(5) if (p := pairer.push(Frame(i, i)))]
    assert got == [(0, 1), (0, 2), (2, 3), (2, 4)]


def test_sequence_restarts_when_time_goes_backwards():
    pairer = SequencePairer()
    pairer.push(Frame(10, "a"))
    assert pairer.push(Frame(20, "b")) is not None
    assert pairer.push(Frame(5, "loop")) is None
    assert pairer.resets == 1 and pairer.keyframe.data == "loop"
    assert pairer.push(Frame(6, "next")).reference.data == "loop"


VGA = StreamKey("camera", 640, 480, "bgr8")
S = 1_000_000_000  # nanoseconds per second


@pytest.mark.parametrize("stamp_ns, key, expected", [
    (10 * S + 33 * MS, VGA, None),
    (10 * S + 1 * S, VGA, None),  # exactly max_gap_s: still a pair
    (10 * S + 1 * S + 1, VGA, "gap"),
    (19 * S, VGA, "gap"),  # the 9 s gap
    (10 * S - 1, VGA, "stamp_backwards"),
    (10 * S + 33 * MS, StreamKey("camera", 1280, 960, "bgr8"), "size"),
    (10 * S + 33 * MS, StreamKey("camera", 640, 480, "mono8"), "encoding"),
    (10 * S + 33 * MS, StreamKey("left", 640, 480, "bgr8"), "frame_id"),
    (19 * S, StreamKey("left", 1280, 960, "mono8"), "frame_id"),  # several: the first in RESTART_REASONS
    (5 * S, StreamKey("left", 1280, 960, "mono8"), "stamp_backwards"),
    (10 * S + 33 * MS, None, None),  # no key: only the stamps count
])
def test_restart_reasons(stamp_ns, key, expected):
    assert restart_reason(10 * S, VGA, stamp_ns, key, max_gap_ns=S) == expected


def test_max_gap_zero_allows_any_gap():
    assert restart_reason(10 * S, VGA, 10_000 * S, VGA, max_gap_ns=0) is None


@pytest.mark.parametrize("keyframe_every", [1, 3])
def test_sequence_restarts_on_each_reason_and_counts_it(keyframe_every):
    pairer = SequencePairer(keyframe_every=keyframe_every, max_gap_s=1.0)
    frames = [
        (0 * S, VGA, "f0", None),
        (0 * S + 100 * MS, VGA, "f1", None),
        (9 * S, VGA, "after gap", "gap"),
        (9 * S + 100 * MS, StreamKey("camera", 1280, 960, "bgr8"), "large", "size"),
        (9 * S + 200 * MS, StreamKey("camera", 1280, 960, "mono8"), "mono", "encoding"),
        (9 * S + 300 * MS, StreamKey("left", 1280, 960, "mono8"), "left", "frame_id"),
        (1 * S, StreamKey("left", 1280, 960, "mono8"), "looped", "stamp_backwards"),
        (1 * S + 100 * MS, StreamKey("left", 1280, 960, "mono8"), "next", None),
    ]
    paired = []
    for stamp_ns, key, name, reason in frames:
        pair = pairer.push(Frame(stamp_ns, name), key)
        assert pairer.last_restart == reason, name
        if pair is not None:
            paired.append((pair.reference.data, pair.current.data))
        else:
            assert name == "f0" or reason is not None, name
    assert paired == [("f0", "f1"), ("looped", "next")]
    assert pairer.restarts == {reason: 1 for reason in RESTART_REASONS}
    assert pairer.resets == len(RESTART_REASONS)


def test_a_copied_sequence_pairer_keeps_its_own_counts():
    import copy

    pairer = SequencePairer(max_gap_s=1.0)
    pairer.push(Frame(0, "a"), VGA)
    before = copy.copy(pairer)
    pairer.push(Frame(5 * S, "b"), VGA)
    assert pairer.restarts["gap"] == 1 and before.restarts["gap"] == 0


def test_invalid_sequence_arguments():
    with pytest.raises(ValueError, match="max_gap_s"):
        SequencePairer(max_gap_s=-1.0)
    with pytest.raises(ValueError, match="max_gap_s"):
        SequencePairer(max_gap_s=float("nan"))
    with pytest.raises(ValueError, match="never replaced"):
        SequencePairer(keyframe_every=0, min_matches=0)
    with pytest.raises(ValueError, match="min_score"):
        SequencePairer(min_score=-0.1)
    with pytest.raises(ValueError, match="min_score"):
        SequencePairer(min_score=float("nan"))
    with pytest.raises(ValueError):
        SequencePairer(keyframe_every=-1)
    with pytest.raises(ValueError):
        SequencePairer(min_matches=-5)


# ----- newest-only mailbox -----


def test_slot_keeps_only_the_newest_item():
    slot: LatestOnlySlot[int] = LatestOnlySlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(0) == 3
    assert slot.dropped == 2 and slot.put_count == 3
    assert slot.take(0.01) is None


def test_slot_close_wakes_a_waiting_worker():
    slot: LatestOnlySlot[int] = LatestOnlySlot()
    result = []
    worker = threading.Thread(target=lambda: result.append(slot.take(timeout_s=30)))
    worker.start()
    time.sleep(0.05)
    slot.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and result == [None] and slot.closed


def test_slow_consumer_sees_increasing_items_and_never_the_backlog():
    slot: LatestOnlySlot[int] = LatestOnlySlot()
    taken = []

    def consume():
        while (item := slot.take(timeout_s=2)) is not None:
            taken.append(item)
            if item == 9_999:
                return
            time.sleep(0.002)  # a slow "inference"

    worker = threading.Thread(target=consume)
    worker.start()
    for i in range(10_000):
        slot.put(i)
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert taken == sorted(taken) and taken[-1] == 9_999
    assert len(taken) + slot.dropped == slot.put_count == 10_000
    assert slot.dropped > 0
