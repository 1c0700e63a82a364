"""Command-line options shared by several subcommands (one definition each)."""

from __future__ import annotations

import argparse

__all__ = ["add_data_options"]


def add_data_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--data-dir``, ``--text-column`` and ``--label-column`` to ``parser``.

    Dests ``data_dir`` (default None: :func:`adue.data.resolve_data_dir` decides),
    ``text_column`` (default ``text``) and ``label_column`` (default ``label``); pass them to
    :func:`adue.data.load_dataset` as ``data_dir=``, ``text_column=``, ``label_column=``.
    """
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="folder of the named datasets, laid out like ../shared/data (default: "
        "$ADUE_DATA_DIR, else a shared/data folder in the current folder or above, else the "
        "user cache ~/.cache/adue/data, else the Hugging Face hub)",
    )
    group.add_argument(
        "--text-column",
        metavar="NAME",
        default="text",
        help="column (CSV header) or key (JSONL) holding the text in a user dataset folder "
        "(default: text)",
    )
    group.add_argument(
        "--label-column",
        metavar="NAME",
        default="label",
        help="column (CSV header) or key (JSONL) holding the label in a user dataset folder "
        "(default: label)",
    )
    return parser
