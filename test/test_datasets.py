"""Ground truth of the training datasets: homography pairs and depth (BlendedMVS layout)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from coarse_loftr_train.datasets import (
    BlendedMVSPairs,
    DepthView,
    HomographyPairs,
    HomographySampling,
    RandomPairs,
    cell_points,
    collate,
    depth_targets,
    homography_targets,
    read_mvsnet_pairs,
    read_pfm,
    sample_homography_pair,
    split_images,
    write_pfm,
)

STRIDE = 16


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1, dy], [0, 0, 1]])


def test_translation_by_whole_cells_matches_shifted_cells_with_zero_offset():
    size, grid = (160, 128), (10, 8)
    cells1, offsets1 = homography_targets(_translation(32, 16), size, STRIDE)
    cells = np.arange(80)
    col, row = cells % 10, cells // 10
    inside = (col + 2 < 10) & (row + 1 < 8)
    assert (cells1[~inside] == -1).all()
    assert (cells1[inside] == (row[inside] + 1) * 10 + col[inside] + 2).all()
    assert np.abs(offsets1).max() == 0


def test_sub_cell_translation_gives_the_exact_offset():
    cells1, offsets1 = homography_targets(_translation(5.0, -3.25), (160, 128), STRIDE)
    matched = cells1 >= 0
    assert matched.sum() > 50
    np.testing.assert_allclose(offsets1[matched], np.tile([[5.0, -3.25]], (matched.sum(), 1)), atol=1e-5)
    # Anchor + offset is the exact warped cell position.
    anchors = cell_points(10, 8, STRIDE)[cells1[matched]]
    np.testing.assert_allclose(anchors + offsets1[matched], cell_points(10, 8, STRIDE)[matched] + [5.0, -3.25], atol=1e-5)


def test_zoom_out_keeps_matches_one_to_one():
    zoom = np.array([[0.5, 0, 40], [0, 0.5, 30], [0, 0, 1]])
    cells1, _ = homography_targets(zoom, (160, 128), STRIDE)
    matched = cells1[cells1 >= 0]
    assert len(matched) > 10
    assert len(np.unique(matched)) == len(matched)


def test_homography_pair_images_agree_with_their_homography():
    source = skimage.data.camera()
    rng = np.random.default_rng(3)
    image0, image1, homography = sample_homography_pair(source, (320, 240), HomographySampling(), rng)
    assert image0.shape == image1.shape == (240, 320)
    warped = cv2.warpPerspective(image0, homography, (320, 240), flags=cv2.INTER_LINEAR, borderValue=0)
    valid = cv2.warpPerspective(np.full_like(image0, 255), homography, (320, 240), borderValue=0) == 255
    valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & (image1 > 0)
    assert valid.mean() > 0.2
    difference = np.abs(warped.astype(float) - image1.astype(float))[valid]
    # A wrong homography leaves differences of tens of gray levels on this photo.
    assert np.median(difference) < 6
    unrelated = np.abs(np.roll(warped, 7, axis=1).astype(float) - image1.astype(float))[valid]
    assert np.median(unrelated) > 2 * np.median(difference)


def test_homography_pairs_are_reproducible_and_vary_with_the_epoch(tmp_path):
    paths = []
    for name in ("camera", "coffee", "astronaut"):
        image = getattr(skimage.data, name)()
        path = tmp_path / f"{name}.png"
        cv2.imwrite(str(path), image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    dataset = HomographyPairs(paths, (160, 128), STRIDE, pairs_per_epoch=4, seed=1)
    a, b = dataset[2], dataset[2]
    for key in a:
        assert torch.equal(a[key], b[key])
    assert a["image0"].shape == (1, 128, 160) and a["cells1"].shape == (80,) and a["offsets1"].shape == (80, 2)
    assert a["image0"].dtype == torch.float32 and 0 <= a["image0"].min() and a["image0"].max() <= 1
    cells1, offsets1 = homography_targets(a["homography"].numpy(), (160, 128), STRIDE)
    assert np.array_equal(cells1, a["cells1"].numpy())
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2]["image0"], a["image0"])
    batch = collate([dataset[0], dataset[1]])
    assert batch["image1"].shape == (2, 1, 128, 160)
    draws = RandomPairs(dataset, 3, seed=0)
    assert len(draws) == 3 and draws[0]["cells1"].shape == (80,)


def test_split_holds_out_the_last_files():
    files = [f"{i:04d}.jpg" for i in range(10)]
    train, held = split_images(files, 3)
    assert train == files[:7] and held == files[7:]
    with pytest.raises(ValueError):
        split_images(files, 10)


def test_pfm_round_trip(tmp_path):
    depth = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    write_pfm(tmp_path / "d.pfm", depth)
    np.testing.assert_array_equal(read_pfm(tmp_path / "d.pfm"), depth)


# --------------------------------------------------------------------------- depth / BlendedMVS

WIDTH, HEIGHT = 768, 576  # the BlendedMVS low-res image size


def _rotation_y(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _plane_depth(K: np.ndarray, normal: np.ndarray, distance: float) -> np.ndarray:
    """z-depth of the plane normal . X = distance seen by camera K."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    rays = np.stack([xs, ys, np.ones_like(xs)], -1).reshape(-1, 3) @ np.linalg.inv(K).T
    return (distance / (rays @ normal)).reshape(HEIGHT, WIDTH).astype(np.float32)


def _write_camera(path, world_to_camera: np.ndarray, K: np.ndarray) -> None:
    lines = ["extrinsic"] + [" ".join(f"{v:.10f}" for v in row) for row in world_to_camera] + ["", "intrinsic"]
    lines += [" ".join(f"{v:.10f}" for v in row) for row in K] + ["", "425.0 2.5 128 745.0"]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def plane_scene(tmp_path):
    """A textured plane seen by two cameras, written in the BlendedMVS low-res layout.

    Camera 0 is the world frame; the plane is tilted (normal . X = 5). Image 1 is image 0
    warped by the plane-induced homography, so depth ground truth must equal the
    homography ground truth. Returns (root, homography 0 -> 1 in full-size pixels).
    """
    scene = tmp_path / "5a0000000000000000000000"
    for sub in ("blended_images", "rendered_depth_maps", "cams"):
        (scene / sub).mkdir(parents=True)
    K = np.array([[620.0, 0, 383.5], [0, 620.0, 287.5], [0, 0, 1]])
    normal = np.array([0.0, 0.25, 1.0])
    normal /= np.linalg.norm(normal)
    distance = 5.0
    R, t = _rotation_y(6.0), np.array([0.4, 0.05, 0.3])
    pose1 = np.eye(4)
    pose1[:3, :3], pose1[:3, 3] = R, t
    homography = K @ (R + np.outer(t, normal) / distance) @ np.linalg.inv(K)
    homography /= homography[2, 2]
    texture = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY), (WIDTH, HEIGHT))
    image1 = cv2.warpPerspective(texture, homography, (WIDTH, HEIGHT), borderValue=0)
    normal1 = R @ normal
    depth0 = _plane_depth(K, normal, distance)
    depth1 = _plane_depth(K, normal1, distance + normal1 @ t)
    for index, (image, depth, pose) in enumerate(((texture, depth0, np.eye(4)), (image1, depth1, pose1))):
        cv2.imwrite(str(scene / "blended_images" / f"{index:08d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(scene / "blended_images" / f"{index:08d}_masked.jpg"), image)
        write_pfm(scene / "rendered_depth_maps" / f"{index:08d}.pfm", depth)
        _write_camera(scene / "cams" / f"{index:08d}_cam.txt", pose, K)
    (scene / "cams" / "pair.txt").write_text("2\n0\n1 1 0.9\n1\n1 0 0.9\n")
    return tmp_path, homography


def test_blendedmvs_depth_ground_truth_equals_the_plane_homography(plane_scene):
    root, homography = plane_scene
    dataset = BlendedMVSPairs(root, (WIDTH, HEIGHT), STRIDE)
    assert len(dataset) == 2
    sample = dataset[0]
    expected_cells, expected_offsets = homography_targets(homography, (WIDTH, HEIGHT), STRIDE)
    cells = sample["cells1"].numpy()
    assert (cells >= 0).sum() > 500
    # Depth is sampled at whole pixels, so a cell exactly on a rounding boundary may differ.
    agree = cells == expected_cells
    assert agree.mean() > 0.99
    both = agree & (cells >= 0)
    np.testing.assert_allclose(sample["offsets1"].numpy()[both], expected_offsets[both], atol=0.05)
    assert sample["pose01"].shape == (4, 4) and sample["intrinsics0"].shape == (3, 3)


def test_blendedmvs_resizing_scales_the_cameras(plane_scene):
    root, homography = plane_scene
    size = (320, 240)
    dataset = BlendedMVSPairs(root, size, STRIDE)
    sample = dataset[0]
    sx, sy = size[0] / WIDTH, size[1] / HEIGHT
    scale = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    small = scale @ homography @ np.linalg.inv(scale)
    expected_cells, expected_offsets = homography_targets(small, size, STRIDE)
    cells = sample["cells1"].numpy()
    agree = cells == expected_cells
    assert (cells >= 0).sum() > 100 and agree.mean() > 0.95
    both = agree & (cells >= 0)
    # Nearest-neighbour depth resizing moves the lookup by up to half an original pixel.
    np.testing.assert_allclose(sample["offsets1"].numpy()[both], expected_offsets[both], atol=0.5)


def test_depth_check_removes_occluded_points(plane_scene):
    root, homography = plane_scene
    dataset = BlendedMVSPairs(root, (WIDTH, HEIGHT), STRIDE)
    scene = dataset.pairs[0][0]
    image0, view0 = dataset.load_view(scene, 0)
    image1, view1 = dataset.load_view(scene, 1)
    clean, _ = depth_targets(view0, view1, STRIDE)
    occluded_depth = view1.depth.copy()
    occluded_depth[200:400, 300:500] *= 0.6  # something in front of the plane in view 1
    occluded, _ = depth_targets(view0, DepthView(occluded_depth, view1.intrinsics, view1.world_to_camera), STRIDE)
    lost = (clean >= 0) & (occluded < 0)
    assert lost.sum() > 50
    columns = WIDTH // STRIDE
    landing = np.stack([clean[lost] % columns, clean[lost] // columns], 1) * STRIDE
    assert ((landing[:, 0] >= 300 - STRIDE) & (landing[:, 0] < 500 + STRIDE) & (landing[:, 1] >= 200 - STRIDE) & (landing[:, 1] < 400 + STRIDE)).all()
    # A view with no depth has no ground truth.
    empty = DepthView(np.zeros_like(view1.depth), view1.intrinsics, view1.world_to_camera)
    assert (depth_targets(view0, empty, STRIDE)[0] == -1).all()


def test_mvsnet_pair_file(plane_scene):
    root, _ = plane_scene
    pairs = read_mvsnet_pairs(next(root.iterdir()) / "cams" / "pair.txt")
    assert pairs == [(0, 1, 0.9), (1, 0, 0.9)]


def test_rotation_band_draws_magnitudes_between_min_and_max_either_way():
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    sampling = HomographySampling(crop_scale=(0.5, 0.5), min_rotation=30.0, rotation=60.0, scale=(1.0, 1.0), translation=0.0, perspective=0.0)
    angles = []
    for seed in range(16):
        _, _, homography = sample_homography_pair(photo, (160, 120), sampling, np.random.default_rng(seed))
        angles.append(np.degrees(np.arctan2(homography[1, 0], homography[0, 0])))
    magnitudes = np.abs(angles)
    assert magnitudes.min() >= 30 - 1e-6 and magnitudes.max() <= 60 + 1e-6
    assert min(angles) < 0 < max(angles)
