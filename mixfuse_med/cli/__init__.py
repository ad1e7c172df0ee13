"""The ``mixfuse`` command: one program, one subcommand per job.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``handler`` to a function taking the parsed
arguments and returning an exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import MixfuseError
from . import batch, demo, evaluate, fuse, fuse2d

SUBCOMMANDS = (fuse, batch, demo, evaluate, fuse2d)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="mixfuse", description="Fuse MRI with PET or SPECT using the MixFuse transformer.")
    parser.add_argument("--version", action="version", version=f"mixfuse-med {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (MixfuseError, ValueError, OSError) as err:
        print(f"mixfuse {args.command}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"mixfuse {args.command}: error: out of memory; use a machine with more memory or smaller "
              "volumes", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mixfuse {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
