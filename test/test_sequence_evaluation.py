"""``eval --sequence``: TUM poses, the relative-pose conventions on real KITTI cameras, the chained
trajectory (read back by evo), and one-line errors for bad sequence folders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_run import assert_one_line_error, run_cli
from shared_data import SHARED, require
from coarse_loftr_train import evaluation as ev
from coarse_loftr_train import sequence_evaluation as seq

KITTI = SHARED / "data" / "kitti_seq_dev"


@pytest.fixture(scope="module")
def kitti() -> seq.SequenceData:
    """The 51 KITTI frames' poses and intrinsics (../shared)."""
    return seq.read_sequence(require(KITTI))


def project_ground_truth(data: seq.SequenceData, k0: int, k1: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exact correspondences of pair (k0, k1): 3D points in front of camera k0, moved to world by
    T_w_c[k0] and into camera k1 by inv(T_w_c[k1]), projected with the real K; only points in
    front of both cameras and inside both images."""
    rng = np.random.default_rng(seed)
    points_c0 = np.c_[rng.uniform(-15, 15, 2000), rng.uniform(-3, 2, 2000), rng.uniform(6, 60, 2000)]
    world = points_c0 @ data.poses[k0][:3, :3].T + data.poses[k0][:3, 3]
    w_to_c1 = np.linalg.inv(data.poses[k1])
    points_c1 = world @ w_to_c1[:3, :3].T + w_to_c1[:3, 3]
    pixels0 = points_c0 @ data.K.T
    pixels1 = points_c1 @ data.K.T
    pixels0, pixels1 = pixels0[:, :2] / pixels0[:, 2:], pixels1[:, :2] / pixels1[:, 2:]
    size = np.array([1226, 370])
    keep = (points_c1[:, 2] > 1) & np.all((pixels0 >= 0) & (pixels0 < size), 1) & np.all((pixels1 >= 0) & (pixels1 < size), 1)
    assert keep.sum() > 100
    return pixels0[keep], pixels1[keep]


def test_kitti_ground_truth_projections_give_zero_pose_error_and_the_misread_convention_does_not(kitti):
    misread = []
    for k0, k1 in [(0, 1), (3, 8), (10, 20), (25, 45), (30, 50)]:
        p0, p1 = project_ground_truth(kitti, k0, k1)
        T = kitti.relative_pose(k0, k1)
        assert ev.relative_pose_error(p0, p1, kitti.K, kitti.K, T) < 0.05
        # The estimate also has the direction of travel (the sign the error protocol ignores).
        estimate = ev.estimate_relative_pose(p0, p1, kitti.K, kitti.K)
        assert np.dot(estimate[:3, 3], T[:3, 3] / np.linalg.norm(T[:3, 3])) > 0.9999
        assert np.degrees(np.arccos(np.clip((np.trace(estimate[:3, :3].T @ T[:3, :3]) - 1) / 2, -1, 1))) < 0.05
        # The poses read as world-to-camera instead (T_c_w): the wrong relative pose.
        wrong = kitti.poses[k1] @ np.linalg.inv(kitti.poses[k0])
        misread.append(ev.relative_pose_error(p0, p1, kitti.K, kitti.K, wrong))
    # Forward driving with small turns: reading the poses the other way round still errs by up to
    # 1.5 deg on these exact points (the protocol ignores the sign of t), 30x the bound above.
    assert max(misread) > 1.0


def test_chaining_exact_steps_reproduces_the_ground_truth_trajectory(kitti):
    data = kitti.limited(12)
    steps = [ev.estimate_relative_pose(*project_ground_truth(data, k, k + 1, seed=k), data.K, data.K) for k in range(len(data) - 1)]
    poses, failed = seq.chain_trajectory(data, steps)
    assert failed == 0
    assert np.abs(poses[:, :3, 3] - data.poses[:, :3, 3]).max() < 0.01  # metres, after ~13 m of driving
    # A step without a pose repeats the previous motion (constant velocity).
    steps[5] = None
    poses, failed = seq.chain_trajectory(data, steps)
    assert failed == 1
    step4 = np.linalg.inv(poses[4]) @ poses[5]
    assert np.allclose(np.linalg.inv(poses[5]) @ poses[6], step4, atol=1e-9)


def test_tum_round_trip_and_quaternions_against_scipy(tmp_path):
    Rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    rotations = Rotation.random(50, random_state=0)
    for rotation in rotations:
        q = seq.matrix_to_quaternion(rotation.as_matrix())
        reference = rotation.as_quat()  # x, y, z, w
        assert min(np.abs(q - reference).max(), np.abs(q + reference).max()) < 1e-9
        assert np.allclose(seq.pose_matrix([0, 0, 0], q)[:3, :3], rotation.as_matrix(), atol=1e-9)
    poses = np.stack([seq.pose_matrix(np.arange(3) * i, r.as_quat()) for i, r in enumerate(rotations)])
    seq.write_tum_trajectory(tmp_path / "t.txt", np.arange(50) * 0.1, poses)
    stamps, read = seq.read_tum_trajectory(tmp_path / "t.txt")
    assert np.allclose(stamps, np.arange(50) * 0.1) and np.allclose(read, poses, atol=1e-8)


def test_strides_are_parsed_and_pairs_enumerated():
    assert seq.parse_strides("10,1, 5") == (1, 5, 10)
    assert seq.stride_pairs(5, 2) == [(0, 2), (1, 3), (2, 4)]
    for bad in ("", "0", "1,x", "-5"):
        with pytest.raises(ValueError, match="--strides"):
            seq.parse_strides(bad)


@pytest.mark.slow
def test_eval_sequence_on_kitti_frames_scores_and_writes_a_trajectory_evo_reads(tmp_path):
    require(KITTI)
    out_json, out_trajectory = tmp_path / "seq.json", tmp_path / "trajectory.txt"
    process = run_cli("eval", "--sequence", KITTI / "images", "--strides", "1", "--limit", "5", "--baselines", "orb",
                      "--keyframes", "--json", out_json, "--output-trajectory", out_trajectory)
    assert process.returncode == 0, process.stderr
    assert "eval --sequence" not in process.stderr  # no progress bar in a redirected log
    results = json.loads(out_json.read_text())
    assert set(results) == {"default", "default (keyframes)", "orb-2000"}
    assert results["default"]["stride_1"]["pairs"] == 4
    assert results["default"]["stride_1"]["auc@10deg"] > 60  # 92 measured on these 4 pairs; ORB 74
    assert results["default (keyframes)"]["stride_1"]["auc@10deg"] > 60
    assert results["default"]["trajectory_failed_steps"] == 0

    evo = pytest.importorskip("evo", reason="the trajectory check needs evo: pip install .[eval]")
    from evo.core import metrics, sync
    from evo.tools import file_interface

    reference = file_interface.read_tum_trajectory_file(str(KITTI / "poses.txt"))
    estimate = file_interface.read_tum_trajectory_file(str(out_trajectory))
    assert estimate.num_poses == 5
    reference, estimate = sync.associate_trajectories(reference, estimate)
    assert reference.num_poses == 5
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((reference, estimate))
    # ~4.8 m driven; ground-truth step lengths, so only directions can be off.
    assert ape.get_statistic(metrics.StatisticsType.rmse) < 0.15
    rpe = metrics.RPE(metrics.PoseRelation.rotation_angle_deg, delta=1, delta_unit=metrics.Unit.frames)
    rpe.process_data((reference, estimate))
    assert rpe.get_statistic(metrics.StatisticsType.max) < 1.0
    del evo


def _write_sequence(folder: Path, frames: int = 3, poses: int | None = None, camera: dict | None = None) -> Path:
    folder.mkdir()
    for i in range(frames):
        cv2.imwrite(str(folder / f"{i:06d}.png"), np.full((48, 64), 40 * i, np.uint8))
    lines = [f"{0.1 * i:.1f} 0 0 {i} 0 0 0 1" for i in range(frames if poses is None else poses)]
    (folder / "poses.txt").write_text("\n".join(lines) + "\n")
    (folder / "cameras.json").write_text(json.dumps(camera if camera is not None else {"fx": 50, "fy": 50, "cx": 32, "cy": 24}))
    return folder


def test_bad_sequences_are_one_line_errors(tmp_path, capsys):
    from coarse_loftr_ros.cli import main

    cases = {
        "missing folder": (tmp_path / "nowhere", (), ("does not exist",)),
        "no images": ((tmp_path / "empty").mkdir() or tmp_path / "empty", (), ("no images in",)),
        "pose count": (_write_sequence(tmp_path / "short", poses=2), (), ("2 poses for 3 frames",)),
        "no fx": (_write_sequence(tmp_path / "nofx", camera={"fy": 50, "cx": 32, "cy": 24}), (), ("lacks fx",)),
        "text fx": (_write_sequence(tmp_path / "textfx", camera={"fx": "fifty", "fy": 50, "cx": 32, "cy": 24}), (), ("fx must be a finite number",)),
        "size": (_write_sequence(tmp_path / "size", camera={"fx": 5, "fy": 5, "cx": 3, "cy": 2, "width": 1226, "height": 370}), (),
                 ("is for 1226x370 images", "is 64x48")),
        "strides": (_write_sequence(tmp_path / "strides"), ("--strides", "1,a"), ("--strides must be positive",)),
        "too short": (_write_sequence(tmp_path / "few"), ("--strides", "5"), ("no pair at strides 5",)),
    }
    truncated = _write_sequence(tmp_path / "truncated")
    (truncated / "poses.txt").write_text("0.0 0 0 0 0 0 0 1\n0.1 0 0 1 0 0\n0.2 0 0 2 0 0 0 1\n")
    cases["truncated line"] = (truncated, (), ("poses.txt line 2 is not a TUM pose",))
    for name, (folder, extra, fragments) in cases.items():
        assert main(["eval", "--sequence", str(folder), *extra]) == 2, name
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("coarse-loftr eval: error: "), (name, lines)
        assert all(fragment in lines[0] for fragment in fragments), (name, lines[0])
    # As a user runs it: a camera given explicitly that does not exist; an option that needs --sequence.
    assert_one_line_error(run_cli("eval", "--sequence", tmp_path / "few", "--camera", tmp_path / "no.json"), "no.json does not exist")
    assert main(["eval", "--poses", str(tmp_path), "--output-trajectory", str(tmp_path / "t.txt")]) == 2
    assert "--output-trajectory needs --sequence" in capsys.readouterr().err


def test_strides_of_an_oracle_score_full_auc_and_frames_are_kept_in_a_window(kitti, tmp_path):
    data = kitti.limited(26)
    pairs_seen = []

    def oracle(k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        pairs_seen.append((k0, k1))
        return project_ground_truth(data, k0, k1, seed=k0)

    results = seq.evaluate_strides(oracle, data, (1, 5, 20), limit=10)
    assert {s: r.pairs for s, r in results.items()} == {1: seq.stride_pairs(26, 1)[:10], 5: seq.stride_pairs(26, 5)[:10],
                                                       20: seq.stride_pairs(26, 20)}
    for result in results.values():
        metrics = result.metrics()
        assert metrics["auc@5deg"] > 99 and metrics["pairs"] == len(result.pairs)
    assert [k1 for _, k1 in pairs_seen] == sorted(k1 for _, k1 in pairs_seen)  # in time order, as a front end meets them
    frames = seq.FrameCache(data.images, window=5)
    for k1 in range(12):
        frames[max(k1 - 5, 0)], frames[k1]
    assert sorted(frames._frames) == list(range(6, 12))
