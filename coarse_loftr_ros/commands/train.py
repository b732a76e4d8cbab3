"""``coarse-loftr train``: train a model from a YAML config (needs torch; DDP via torchrun)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a coarse LoFTR model (needs torch; multi-GPU with torchrun)",
        description=(
            "Train a coarse LoFTR model: supervised coarse + refinement losses on homography or depth pairs, "
            "optional knowledge distillation from a teacher checkpoint. Settings: built-in defaults <- --config YAML "
            "<- section.key=value overrides. Multi-GPU / multi-node: "
            "torchrun --nproc_per_node N -m coarse_loftr_ros.cli train ..."
        ),
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML settings file (see config/train_*.yaml)")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                        help="continue from <output>/checkpoints/last.pt, or from the given checkpoint")
    parser.add_argument("--print-settings", action="store_true", help="print the merged settings and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=1e-3 train.epochs=10 output=runs/x")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    from ..errors import BackendUnavailableError, CoarseLoftrError

    try:
        from coarse_loftr_train.trainer import load_settings, train
    except ImportError as error:
        raise BackendUnavailableError.from_import("train", error, "`pip install torch==2.13.0 pyyaml`") from None
    if args.config is not None and not args.config.is_file():
        raise CoarseLoftrError(f"config file {args.config} does not exist")
    try:
        settings = load_settings(args.config, args.overrides)
    except (KeyError, TypeError, ValueError) as error:
        raise CoarseLoftrError(f"bad settings: {error}") from None
    if args.print_settings:
        print(json.dumps(settings, indent=2))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        train(settings, resume=args.resume)
    except (FileNotFoundError, ValueError) as error:
        raise CoarseLoftrError(str(error).splitlines()[0]) from None
    except KeyboardInterrupt:
        # Checkpoints are written at the end of each epoch: the unfinished one is lost.
        last = Path(settings["output"]) / "checkpoints" / "last.pt"
        kept = f"{last} keeps the last finished epoch; continue with --resume" if last.is_file() else "no epoch finished, nothing kept"
        print(f"coarse-loftr train: interrupted; {kept}", file=sys.stderr)
        return 130
    return 0
