#!/usr/bin/env python3
"""Choose the default extraction settings (border, threshold) by measurement.

Builds a development set of synthetic homography pairs from scikit-image's photographs and
the ../shared Freiburg frames (none of them in the training corpus), exports the given
checkpoint once per border value, sweeps the runtime threshold, and prints homography
AUC@3/5/10 px, precision and match counts for every setting.

    python scripts/tune_extraction.py --checkpoint CKPT [--pairs 48] [--width 640 --height 480] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def development_images(folder: Path) -> list[Path]:
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "camera", "page", "text", "moon"):
        image = getattr(skimage.data, name)()
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), gray)
        paths.append(path)
    paths += sorted((SHARED / "data" / "freiburg_sequence").glob("*.png"))[::4]
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--borders", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.2])
    parser.add_argument("--width", type=int, default=640, help="model input width, pixels (default 640)")
    parser.add_argument("--height", type=int, default=480, help="model input height, pixels (default 480)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from coarse_loftr_ros import Matcher
    from coarse_loftr_train.checkpoint import load_model
    from coarse_loftr_train.evaluation import evaluate_homographies, make_homography_set, matcher_method, read_homography_pairs
    from coarse_loftr_train.export import ExtractionConfig, export_onnx

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_homography_set(development_images(tmp / "images"), tmp / "dev", args.pairs, seed=7)
        pairs = read_homography_pairs(tmp / "dev")
        network = load_model(args.checkpoint)
        network.config = network.config.with_input_size(args.width, args.height)  # checkpoints keep their training size
        for border in args.borders:
            model = export_onnx(network, tmp / f"border{border}.onnx", ExtractionConfig(border=border), sequence_graphs=False)
            for threshold in args.thresholds:
                scores = evaluate_homographies(matcher_method(Matcher(model, threshold=threshold)), pairs)
                rows.append({"border": border, "threshold": threshold, **{k: round(v, 2) for k, v in scores.items()}})
                print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: (r["auc@5px"], r["auc@10px"]))
    print("best:", json.dumps(best))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "best": best}, indent=2) + "\n")


if __name__ == "__main__":
    main()
