"""``adue datasets``: the named datasets (or given user folders), their classes, split sizes
and where each would be read from."""

from __future__ import annotations

import argparse
import json

from adue.cli._options import add_data_options

_MAX_CLASSES_SHOWN = 6


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "datasets",
        help="list the datasets: classes, split sizes, where each would be read from",
        description="List the named datasets (or the given ones, named or user folders): their "
        "classes, train/validation/test sizes and the local folder each would be read from, or "
        "the hub. Sizes come from the registry unless --count reads the local files; the hub "
        "is never contacted.",
    )
    p.add_argument(
        "datasets",
        nargs="*",
        metavar="DATASET",
        help="named datasets or user folders (PATH or NAME=PATH; always read); default: all "
        "named datasets",
    )
    p.add_argument(
        "--count",
        action="store_true",
        help="count the rows of the local files instead of taking the registry's sizes",
    )
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    add_data_options(p)
    p.set_defaults(func=_run)
    return p


def _classes(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_CLASSES_SHOWN])
    more = len(names) - _MAX_CLASSES_SHOWN
    return f"{len(names)}: {shown}" + (f", ... (+{more})" if more > 0 else "")


def _where(row: dict) -> str:
    if row["location"] is None:
        return f"the hub: {row['hub']} (no local folder found)"
    text = f"{row['location']} (from {row['location_source']})"
    if row["missing_files"]:
        text += f"; MISSING: {', '.join(row['missing_files'])}"
    return text


def _print_table(rows: list[dict]) -> None:
    header = f"{'dataset':14s} {'train':>8s} {'valid.':>8s} {'test':>8s}  sizes from"
    print(header)
    print("-" * len(header))
    for row in rows:
        s = row["sizes"]
        print(
            f"{row['name']:14s} {s['train']:8,d} {s['validation']:8,d} {s['test']:8,d}  "
            f"{row['sizes_from']}"
        )
        print(f"{'':14s} classes {_classes(row['classes'])}")
        print(f"{'':14s} read from {_where(row)}")


def _run(args: argparse.Namespace) -> int:
    from adue.data import list_datasets
    from adue.data.catalog import describe_dataset

    specs = args.datasets or list_datasets()
    rows = [
        describe_dataset(
            spec,
            args.data_dir,
            count=args.count,
            text_column=args.text_column,
            label_column=args.label_column,
        )
        for spec in specs
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    return 1 if any(row["missing_files"] for row in rows) else 0
