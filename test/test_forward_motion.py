"""Forward-motion training pairs: the rendered view and the ground truth agree with each other."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from coarse_loftr_train import trainer
from coarse_loftr_train.datasets import HomographyPairs, cell_points, coarse_targets
from coarse_loftr_train.forward_motion import ForwardMotionPairs, ForwardMotionSampling, sample_forward_motion_pair

SIZE, STRIDE = (320, 240), 8
GRID = (SIZE[0] // STRIDE, SIZE[1] // STRIDE)


@pytest.fixture(scope="module")
def photograph() -> np.ndarray:
    return skimage.data.camera()  # 512x512 uint8, a real photograph


def _bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    x, y = points[:, 0], points[:, 1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    x1, y1 = np.minimum(x0 + 1, image.shape[1] - 1), np.minimum(y0 + 1, image.shape[0] - 1)
    im = image.astype(np.float64)
    return (im[y0, x0] * (1 - fx) + im[y0, x1] * fx) * (1 - fy) + (im[y1, x0] * (1 - fx) + im[y1, x1] * fx) * fy


def test_without_motion_every_cell_matches_itself(photograph):
    still = ForwardMotionSampling(probability=1.0, expansion=(1.0, 1.0), sideways=0.0, rotation=0.0, crop_scale=(0.9, 0.9))
    image0, image1, points1, valid01, points0, valid10 = sample_forward_motion_pair(photograph, SIZE, still, np.random.default_rng(0), STRIDE)
    cells = cell_points(*GRID, STRIDE)
    np.testing.assert_allclose(points1[valid01], cells[valid01], atol=1e-3)
    np.testing.assert_allclose(points0, cells, atol=1e-6)
    assert valid01.mean() > 0.95 and valid10.all()
    cells1, offsets1 = coarse_targets(points1, valid01, points0, valid10, GRID, STRIDE)
    np.testing.assert_array_equal(cells1[valid01], np.flatnonzero(valid01))
    # The same crop rendered twice (warpPerspective and remap): equal up to interpolation.
    assert np.abs(image0.astype(int) - image1.astype(int)).mean() < 2.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_cell_lands_on_the_same_scene_point(photograph, seed):
    """Image 0 at a cell and image 1 where the cell lands show the same intensity; the cells the
    targets pair are mutual, and the scene grows from image 0 to image 1 (forward motion)."""
    sampling = ForwardMotionSampling(probability=1.0, crop_scale=(0.9, 1.0))
    image0, image1, points1, valid01, points0, valid10 = sample_forward_motion_pair(
        photograph, SIZE, sampling, np.random.default_rng(seed), STRIDE
    )
    cells = cell_points(*GRID, STRIDE)
    assert valid01.sum() > 100
    at0 = image0[cells[valid01][:, 1].astype(int), cells[valid01][:, 0].astype(int)].astype(np.float64)
    at1 = _bilinear(image1, points1[valid01])
    shuffled = _bilinear(image1, np.random.default_rng(seed).permutation(points1[valid01]))
    assert np.median(np.abs(at0 - at1)) < 8.0
    assert np.median(np.abs(at0 - shuffled)) > 3 * np.median(np.abs(at0 - at1))
    # Image 1 is nearer: a pair of cells far apart in image 0 is farther apart in image 1.
    spread0 = np.linalg.norm(cells[valid01] - cells[valid01].mean(0), axis=1).mean()
    spread1 = np.linalg.norm(points1[valid01] - points1[valid01].mean(0), axis=1).mean()
    assert spread1 > 1.05 * spread0
    # Where image-1 cells land in image 0 is the inverse of the landing above, to a pixel.
    cells1, _ = coarse_targets(points1, valid01, points0, valid10, GRID, STRIDE)
    matched = cells1 >= 0
    assert matched.sum() > 50
    np.testing.assert_allclose(points0[cells1[matched]], cells[matched], atol=0.75 * STRIDE)


def test_the_homography_pairs_stay_those_of_the_same_seed(tmp_path):
    import cv2

    files = []
    for index, image in enumerate([skimage.data.camera(), skimage.data.coins(), skimage.data.moon()]):
        files.append(tmp_path / f"{index}.png")
        cv2.imwrite(str(files[-1]), image)
    plain = HomographyPairs(files, SIZE, STRIDE, 40, seed=5)
    mixed = ForwardMotionPairs(files, SIZE, STRIDE, 40, seed=5, forward_motion=ForwardMotionSampling(probability=0.5))
    forward = 0
    for index in range(len(plain)):
        sample = mixed[index]
        if "homography" in sample:  # a homography pair: the one HomographyPairs draws
            np.testing.assert_array_equal(sample["image1"].numpy(), plain[index]["image1"].numpy())
        else:
            forward += 1
            assert (sample["cells1"] >= 0).sum() > 20
    assert 8 <= forward <= 32


def test_the_trainer_mixes_them_in_when_asked(tmp_path):
    import cv2

    for index in range(4):
        cv2.imwrite(str(tmp_path / f"{index}.png"), skimage.data.camera())
    base = [f"data.images={tmp_path}", "data.holdout=1", "validation.pairs=0"]
    train, _ = trainer.build_datasets(trainer.load_settings(overrides=base), STRIDE)
    assert type(train) is HomographyPairs  # off by default: the shipped recipes are unchanged
    train, _ = trainer.build_datasets(trainer.load_settings(overrides=[*base, "data.forward_motion.probability=0.3"]), STRIDE)
    assert isinstance(train, ForwardMotionPairs) and train.forward_motion.probability == 0.3
    assert train.forward_motion.expansion == ForwardMotionSampling().expansion
    with pytest.raises(KeyError, match="forward_motion.speed"):
        trainer.load_settings(overrides=["data.forward_motion.speed=3"])
