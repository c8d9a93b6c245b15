"""The ``pixer`` command: an explicit list of sub-commands.

Each sub-command is a module in :mod:`pixer.cli` exposing ``add_args(parser)``
and ``main(args)``; its module docstring is the help text (with an example).
User mistakes (:class:`pixer.errors.PixerError`) are printed as one line and
exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pixer import __version__
from pixer.errors import PixerError

#: sub-command name -> module under pixer.cli (explicit, no discovery)
COMMANDS: dict[str, str] = {
    "simulate": "pixer.cli.simulate",
    "labels": "pixer.cli.labels",
    "train-classifier": "pixer.cli.train_classifier",
    "train": "pixer.cli.train",
    "pick": "pixer.cli.pick",
    "evaluate": "pixer.cli.evaluate",
    "report": "pixer.cli.report",
    "benchmark": "pixer.cli.benchmark",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="pixer",
        description="Particle picking for single-particle cryo-EM (after PIXER).",
    )
    parser.add_argument("--version", action="version", version=f"pixer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        doc = (mod.__doc__ or "").strip()
        p = sub.add_parser(
            name,
            help=doc.splitlines()[0] if doc else name,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_args(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pixer``; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args._main(args)
        if args.command == "train":
            from pixer.train.distributed import exit_rank, is_rank_process

            if is_rank_process():
                exit_rank(int(rc or 0))
    except PixerError as exc:
        print(f"pixer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pixer {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        sys.stderr.close()
        return 0
    except OSError as exc:  # an output folder under a plain file, a full disk, no permission ...
        if exc.filename is None:
            raise
        where = exc.filename2 or exc.filename  # a rename's target: the output the user named
        what = exc.strerror or type(exc).__name__
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            what += " (a plain file is where a folder is needed)"
        print(f"pixer {args.command}: error: {where}: {what}", file=sys.stderr)
        return 2
    return int(rc or 0)


def run_command(name: str, argv: Sequence[str] | None = None) -> int:
    """Run one sub-command, used by the ``bin/pixer-<command>`` shims."""
    return main([name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
