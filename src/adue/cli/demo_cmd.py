"""``adue demo``: the main job -- one quick cell (MiniLM on SST-2, seed 1), then a short summary.

The full report (every table) and the plots are written to files whose paths are printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from adue.cli._options import add_data_options


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="fine-tune MiniLM on SST-2 (quick profile, one seed), score every method, summarise",
        description=(
            "Run one cell with the quick profile (MiniLM on SST-2, seed 1 by default): LoRA "
            "fine-tuning, feature extraction, every uncertainty method and ablation; print a "
            "short summary (accuracy, each method's ROC-AUC and AURC, AdUE vs SR) and write the "
            "full report and plots. A finished run folder is reused, so a second demo only "
            "re-scores."
        ),
    )
    p.add_argument("--dataset", default="sst2")
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", default="quick")
    p.add_argument("--runs-dir", default="runs/demo", metavar="DIR",
                   help="run folders (default: runs/demo)")
    p.add_argument("--results", default="runs/demo/results", metavar="DIR",
                   help="cell JSONs (default: runs/demo/results)")
    p.add_argument("--report", default="runs/demo/report.md", metavar="FILE",
                   help="the full Markdown report (default: runs/demo/report.md)")
    p.add_argument("--plots", default="runs/demo/plots", metavar="DIR",
                   help="risk-coverage and reliability plots (default: runs/demo/plots)")
    add_data_options(p)
    p.add_argument("--metric", default="roc_auc",
                   help="metric(s) of the full report: roc_auc (default), pr_auc, aurc, ece, "
                        "comma list or all")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
    return p


def adue_vs_sr(record: dict) -> str | None:
    """``AdUE vs SR: ROC-AUC +a, AURC -b (x 100; ...)`` for one cell, or None without both."""
    m = record["methods"]
    if any(m.get(k, {}).get("status") != "ok" for k in ("adue", "sr")):
        return None
    a, s = m["adue"]["metrics"], m["sr"]["metrics"]
    parts = []
    for key, label in (("roc_auc", "ROC-AUC"), ("aurc", "AURC")):
        if a.get(key) is not None and s.get(key) is not None:
            parts.append(f"{label} {100 * (a[key] - s[key]):+.1f}")
    if not parts:
        return None
    return ("AdUE vs SR: " + ", ".join(parts)
            + " (x 100; ROC-AUC higher is better, AURC lower is better; one seed)")


def _run(args: argparse.Namespace) -> int:
    from adue._atomic import atomic_write_text
    from adue.cli._config_options import config_overrides
    from adue.cli.run_cmd import failure_line, summary_table
    from adue.config import resolve_config
    from adue.data import resolve_data_dir
    from adue.outputs import check_output_dir, check_output_file
    from adue.report import build_report, check_metrics, write_plots
    from adue.runner import cell_path_for, run_cell

    t0 = time.perf_counter()
    check_metrics(args.metric)  # every option checked before any work
    report, plots = check_output_file(args.report, "--report"), check_output_dir(args.plots, "--plots")
    cfg = resolve_config(dataset=args.dataset, backbone=args.backbone, seed=args.seed,
                         profile=args.profile, **config_overrides(args))
    data_dir = resolve_data_dir(args.data_dir, name=args.dataset)
    print(f"adue demo: {args.backbone} on {args.dataset}, profile {args.profile}, seed {args.seed}; "
          f"data from {data_dir or 'the Hugging Face hub'}", file=sys.stderr)
    record = run_cell(cfg, args.results, runs_dir=args.runs_dir, data_dir=args.data_dir,
                      progress=not args.no_progress, raise_on_error=False)
    path = cell_path_for(args.results, cfg)
    if record["status"] != "complete":
        print(failure_line(record, path, "demo"), file=sys.stderr)
        return 1
    atomic_write_text(report, build_report(args.results, fmt="md", metrics=args.metric, paper=True))
    n_plots = len(write_plots(args.results, plots))
    print(summary_table(record, metrics=("roc_auc", "aurc")))
    line = adue_vs_sr(record)
    if line:
        print(line)
    t = record["timings_s"]
    print(f"full report: {Path(report)}\nplots ({n_plots}): {Path(plots)}\ncell JSON: {path}")
    print(
        f"demo done in {time.perf_counter() - t0:.0f} s (fine-tune {t.get('finetune', 0):.0f} s"
        f"{', reused' if record.get('finetune_reused') else ''}, extract {t.get('extract', 0):.0f} s, "
        f"methods {t.get('methods', 0):.0f} s)",
        file=sys.stderr,
    )
    return 0
