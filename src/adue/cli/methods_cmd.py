"""``adue methods``: list the registered uncertainty methods."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("methods", help="list the registered uncertainty methods")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from adue.methods import list_methods, method_class

    for name in list_methods():
        doc = (method_class(name).__doc__ or "").strip().splitlines()
        print(f"{name:10s} {doc[0] if doc else ''}")
    return 0
