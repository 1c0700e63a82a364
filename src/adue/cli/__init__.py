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

# Subcommand modules, in the order shown by ``adue --help``. A missing module is a bug: the
# import fails loudly.
_SUBCOMMANDS = (
    "adue.cli.fit_cmd",
    "adue.cli.predict_cmd",
    "adue.cli.evaluate_cmd",
    "adue.cli.serve_cmd",
    "adue.cli.datasets_cmd",
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
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="more logging: default warnings only (and progress bars), -v info, -vv debug",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in _SUBCOMMANDS:
        importlib.import_module(mod_name).add_parser(sub)
    return parser


def log_level(verbose: int) -> int:
    """Logging level for ``-v`` given ``verbose`` times: WARNING, INFO (-v), DEBUG (-vv)."""
    return (logging.WARNING, logging.INFO, logging.DEBUG)[min(max(int(verbose), 0), 2)]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = log_level(args.verbose)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("adue").setLevel(level)  # also when logging was configured before
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:  # bad input, or the OS refused (one line)
        if args.verbose >= 2:
            raise
        print(f"adue: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
