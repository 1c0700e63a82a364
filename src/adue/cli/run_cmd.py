"""``adue run``: one cell -- fine-tune (or reuse), extract, score every variant, write its JSON."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

# RunConfig fields set by their own options, and the one never offered on the command line
# (remote code stays off).
_FIXED = ("dataset", "backbone", "seed", "profile", "trust_remote_code")


def parse_value(text: str) -> Any:
    """A command-line value: JSON literal (``2000``, ``5e-4``, ``true``, ``null``) or a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


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


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One ``--<field>`` option per overridable :class:`adue.config.RunConfig` field."""
    from adue.config import RunConfig

    group = p.add_argument_group("run config overrides (default: the profile's values)")
    for f in fields(RunConfig):
        if f.name in _FIXED:
            continue
        group.add_argument(
            "--" + f.name.replace("_", "-"), dest=f"cfg_{f.name}", type=parse_value, default=None,
            metavar="V", help=f"{f.name} ({f.type})",
        )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run",
        help="one cell: fine-tune, extract, score every method variant, write the cell JSON",
        description=(
            "Fine-tune (or reuse a finished run folder with the same resolved config), extract "
            "features, fit and evaluate every method variant, and write "
            "RESULTS/<profile>/<backbone>/<dataset>/seed<S>.json atomically."
        ),
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--backbone", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--results", required=True, metavar="DIR", help="results folder")
    p.add_argument("--runs-dir", metavar="DIR",
                   help="root of the fine-tuned run folders (default: 'runs' beside --results)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="datasets folder (default: $ADUE_DATA_DIR, else a shared/data folder "
                        "found in the current directory or above)")
    from adue.variants import list_variants

    p.add_argument("--methods", metavar="A,B",
                   help="comma-separated subset of variants (default: all of "
                        + ", ".join(list_variants()) + ")")
    p.add_argument("--adue-search", metavar="SPEC",
                   help="AdUE hyper-parameter grid: 'paper' (default) or a JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_options(p)
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from adue.config import resolve_config
    from adue.runner import cell_path, find_data_dir, run_cell
    from adue.variants import resolve_variants

    methods = [v.name for v in resolve_variants(args.methods)]
    cfg = resolve_config(
        dataset=args.dataset, backbone=args.backbone, seed=args.seed, profile=args.profile,
        **config_overrides(args),
    )
    record = run_cell(
        cfg, args.results, runs_dir=args.runs_dir, data_dir=find_data_dir(args.data_dir),
        methods=methods, adue_search=parse_search(args.adue_search),
        progress=not args.no_progress, raise_on_error=False,
    )
    path = cell_path(args.results, cfg.profile, cfg.backbone, cfg.dataset, cfg.seed)
    if record["status"] != "complete":
        err = record.get("error") or {}
        print(f"adue: error: cell failed in {err.get('stage')}: {err.get('type')}: "
              f"{err.get('message')} (recorded in {path})", file=sys.stderr)
        return 1
    print(summary_table(record))
    print(f"wrote {Path(path)}")
    return 0


def summary_table(record: dict) -> str:
    """A short plain-text table of one cell: variant, ROC-AUC, PR-AUC, AURC (x 100)."""
    lines = [
        f"{record['cell']['backbone']} / {record['cell']['dataset']} / seed {record['cell']['seed']}"
        f" ({record['cell']['profile']}): test accuracy "
        f"{100 * (record['accuracy'].get('test') or float('nan')):.1f}",
        f"{'variant':18s} {'ROC-AUC':>8s} {'PR-AUC':>8s} {'AURC':>8s}",
    ]
    for name, e in record["methods"].items():
        if e["status"] != "ok":
            lines.append(f"{name:18s} failed: {e.get('error', '')}")
            continue
        m = e["metrics"]

        def f(x: Any) -> str:
            return "     n/a" if x is None else f"{100 * x:8.1f}"

        lines.append(f"{name:18s} {f(m.get('roc_auc'))} {f(m.get('pr_auc'))} {f(m.get('aurc'))}")
    return "\n".join(lines)
