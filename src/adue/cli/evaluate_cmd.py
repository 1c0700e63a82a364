"""``adue evaluate``: a bundle's metrics on a labelled split, its threshold against its bound."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from adue.cli._options import add_data_options

    p = sub.add_parser(
        "evaluate",
        help="evaluate a bundle on labelled data (metrics, risk at the threshold, risk-coverage plot)",
        description="Score a labelled split with the bundle: ROC-AUC, PR-AUC, AURC, ECE, Brier of "
        "adue.metrics.evaluate; coverage and selective risk at the bundle's threshold next to the "
        "bound it was fitted with; a risk-coverage plot (PNG).",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="a bundle folder written by 'adue fit'")
    p.add_argument("--data", required=True, metavar="DATASET", help="a named dataset or a user folder")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--output", "-o", metavar="DIR", help="folder for metrics.json and risk_coverage.png "
                   "(default: evaluation-<split>/ in the current folder)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    add_data_options(p)
    p.set_defaults(func=run)
    return p


def plot_risk_coverage(result: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Risk-coverage curve with the bundle's operating point and bound; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adue._atomic import atomic_path

    sel = result["selective"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(result["curve"]["coverage"], result["curve"]["risk"], label="selective risk", color="C0")
    if sel["risk"] is not None:
        ax.scatter([sel["coverage"]], [sel["risk"]], color="C3", zorder=3, label="at the bundle's threshold")
    if sel["bound"] is not None:
        ax.axhline(sel["bound"], color="C3", ls="--", lw=1, label=f"bound {sel['bound']:.3f}")
    if sel["target_risk"] is not None:
        ax.axhline(sel["target_risk"], color="grey", ls=":", lw=1, label=f"target {sel['target_risk']:g}")
    ax.set_xlabel("coverage")
    ax.set_ylabel("risk (error rate among kept)")
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    from adue._atomic import atomic_write_text
    from adue.classifier import UncertainClassifier
    from adue.device import resolve_device

    clf = UncertainClassifier.load(args.bundle, device=resolve_device(args.device), batch_size=args.batch_size)
    res = clf.evaluate(args.data, split=args.split, data_dir=args.data_dir, text_column=args.text_column,
                       label_column=args.label_column, progress=not args.no_progress)
    out = Path(args.output or f"evaluation-{args.split}")
    summary = {k: v for k, v in res.items() if k != "curve"}
    atomic_write_text(out / "metrics.json", json.dumps(res, indent=2) + "\n")
    png = plot_risk_coverage(res, out / "risk_coverage.png", title=f"{args.bundle} on {args.data} {args.split}")
    print(json.dumps(summary, indent=2))
    sel = res["selective"]
    if sel["bound"] is not None and sel["risk"] is not None:
        verdict = "within" if sel["risk"] <= sel["bound"] else "ABOVE"
        print(f"selective risk {sel['risk']:.4f} at coverage {sel['coverage']:.4f}: {verdict} the bound "
              f"{sel['bound']:.4f} (target {sel['target_risk']}, delta {sel['delta']})")
    print(f"wrote {out / 'metrics.json'} and {png}")
    return 0
