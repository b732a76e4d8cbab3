#!/usr/bin/env python3
"""Write the development homography benchmark: easy / medium / hard pairs of held-out photos.

    python scripts/make_dev_benchmark.py [--images ../shared/data/train_images] [--output runs/dev] [--count 100]
    coarse-loftr eval --homographies runs/dev/hard --model default      # one level
    python scripts/evaluate_dev.py --model default                        # every level, castle poses, stereo

The pairs come from the LAST ``--holdout`` images of the folder by name (0900-0999 of the
shared training photographs), which no recipe trains on (``data.holdout: 100``). The levels
are ``coarse_loftr_train.evaluation.difficulty_levels()``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coarse_loftr_train.evaluation import difficulty_levels, iterate_images, make_homography_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/train_images"))
    parser.add_argument("--output", type=Path, default=Path("runs/dev"))
    parser.add_argument("--holdout", type=int, default=100, help="use the last N images by name (default 100)")
    parser.add_argument("--count", type=int, default=100, help="pairs per level (default 100)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if not args.images.is_dir():
        parser.error(f"image folder {args.images} does not exist; pass --images (the shared training photographs)")
    images = sorted(iterate_images(args.images))[-args.holdout :]
    for level in difficulty_levels():
        written = make_homography_set(images, args.output / level, args.count, seed=args.seed, difficulty=level)
        print(f"{level}: {len(written)} pairs in {args.output / level}")


if __name__ == "__main__":
    main()
