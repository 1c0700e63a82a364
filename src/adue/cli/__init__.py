"""The ``adue`` command line: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module ``adue.cli.<name>`` exposing
``add_parser(subparsers) -> argparse.ArgumentParser`` whose parser sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Subcommand modules, in the order shown by ``adue --help``. Missing modules are skipped so
# the CLI keeps working while a subcommand is being built.
_SUBCOMMANDS = (
    "adue.cli.backbones_cmd",
    "adue.cli.finetune_cmd",
    "adue.cli.extract_cmd",
    "adue.cli.run_cmd",
    "adue.cli.grid_cmd",
    "adue.cli.report_cmd",
    "adue.cli.demo_cmd",
    "adue.cli.methods_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adue",
        description="Uncertainty for LoRA-fine-tuned transformer classifiers (AdUE and baselines).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in _SUBCOMMANDS:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name == mod_name:
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as exc:
        if args.verbose >= 2:
            raise
        print(f"adue: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
