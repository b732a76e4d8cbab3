"""The ``coarse-loftr`` command.

Each sub-command is a small module in ``coarse_loftr_ros/commands/`` with
``add_parser(subparsers)``, which declares its arguments and sets ``run``; the work itself
lives in the library modules. Command modules import heavy libraries inside ``run`` only,
so ``coarse-loftr --help`` stays fast. Errors a user can fix (a bad option value, an
unwritable output path, a ``CoarseLoftrError``) print one line and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import CoarseLoftrError


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``coarse-loftr match: error: ...``), exit 2.

    Sub-command parsers are created with the same class, so every command behaves alike.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .commands import bench, build_engine, eval as eval_command, export, label, match, replay, train

    parser = OneLineErrorParser(
        prog="coarse-loftr",
        description="Find pixel correspondences between images with a compact coarse LoFTR transformer.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (match, export, bench, build_engine, replay, label, train, eval_command):
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CoarseLoftrError as error:
        print(f"coarse-loftr {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"coarse-loftr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
