"""``adue run``: one cell -- fine-tune (or reuse), extract, score every variant, write its JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from adue.cli._config_options import add_config_options, config_overrides
from adue.cli._options import add_data_options


def parse_search(text: str | None) -> Any:
    """``--adue-search``: ``paper`` or a JSON object of value lists."""
    if text is None or text == "paper":
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"The '--adue-search' option must be 'paper' or a JSON object. Got {text!r} instead."
        ) from exc
    if not isinstance(value, dict):
        raise ValueError(
            f"The '--adue-search' option must be 'paper' or a JSON object. Got {text!r} instead."
        )
    return value


def failure_line(record: dict, path: Any, what: str) -> str:
    """``adue: error: <what> failed in <stage>: <type>: <message> (recorded in <path>)``."""
    err = record.get("error") or {}
    return (f"adue: error: {what} failed in {err.get('stage')}: {err.get('type')}: "
            f"{err.get('message')} (recorded in {path})")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run",
        help="one cell: fine-tune, extract, score every method variant, write the cell JSON",
        description=(
            "Fine-tune (or reuse a finished run folder with the same resolved config and data), "
            "extract features, fit and evaluate every method variant, and write "
            "RESULTS/<profile>/<backbone>/<dataset name>/seed<S>.json atomically. Every option "
            "is checked before any work starts."
        ),
    )
    p.add_argument("--dataset", required=True,
                   help="a named dataset, or a user folder as PATH or NAME=PATH (results and runs "
                        "are filed under its name, never inside the folder)")
    p.add_argument("--backbone", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--results", required=True, metavar="DIR", help="results folder")
    p.add_argument("--runs-dir", metavar="DIR",
                   help="root of the fine-tuned run folders (default: 'runs' beside --results)")
    add_data_options(p)  # --data-dir, --text-column, --label-column
    from adue.variants import list_variants

    p.add_argument("--methods", metavar="A,B",
                   help="comma-separated subset of variants (default: all of "
                        + ", ".join(list_variants()) + ")")
    p.add_argument("--adue-search", metavar="SPEC",
                   help="AdUE hyper-parameter grid: 'paper' (default) or a JSON object")
    p.add_argument("--replace-run", action="store_true",
                   help="if the run folder holds a run with another config or trained on data "
                        "that has changed since, move it aside and train anew (default: refuse)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_options(p)
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from adue.config import resolve_config
    from adue.runner import cell_path_for, run_cell

    cfg = resolve_config(
        dataset=args.dataset, backbone=args.backbone, seed=args.seed, profile=args.profile,
        **config_overrides(args),
    )
    record = run_cell(
        cfg, args.results, runs_dir=args.runs_dir, data_dir=args.data_dir,
        methods=args.methods, adue_search=parse_search(args.adue_search),
        progress=not args.no_progress, raise_on_error=False, replace_stale_run=args.replace_run,
    )
    path = cell_path_for(args.results, cfg)
    if record["status"] != "complete":
        print(failure_line(record, path, "cell"), file=sys.stderr)
        return 1
    print(summary_table(record))
    print(f"wrote {Path(path)}")
    return 0


def _pct(x: Any) -> str:
    return "     n/a" if x is None else f"{100 * x:8.1f}"


_HEADERS = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "aurc": "AURC"}


def summary_table(record: dict, metrics: tuple[str, ...] = ("roc_auc", "pr_auc", "aurc")) -> str:
    """A short plain-text table of one cell: variant and ``metrics`` (x 100)."""
    cell = record["cell"]
    lines = [
        f"{cell['backbone']} / {cell['dataset']} / seed {cell['seed']} ({cell['profile']}): "
        f"test accuracy {100 * (record['accuracy'].get('test') or float('nan')):.1f}",
        f"{'variant':18s} " + " ".join(f"{_HEADERS.get(m, m):>8s}" for m in metrics),
    ]
    not_applicable: dict[str, list[str]] = {}
    for name, e in record["methods"].items():
        if e["status"] == "not_applicable":
            not_applicable.setdefault(e.get("reason", ""), []).append(name)
        elif e["status"] != "ok":
            lines.append(f"{name:18s} failed: {e.get('error', '')}")
        else:
            lines.append(f"{name:18s} " + " ".join(_pct(e["metrics"].get(m)) for m in metrics))
    for reason, names in not_applicable.items():  # one line per reason, not one per variant
        lines.append(f"not applicable ({', '.join(names)}): {reason}")
    return "\n".join(lines)
