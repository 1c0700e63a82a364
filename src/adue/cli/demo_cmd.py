"""``adue demo``: the main job -- one quick cell (MiniLM on SST-2, seed 1), then its report."""

from __future__ import annotations

import argparse
import sys
import time


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="fine-tune MiniLM on SST-2 (quick profile, one seed), score every method, print the report",
        description=(
            "Run one cell with the quick profile (MiniLM on SST-2, seed 1 by default): LoRA "
            "fine-tuning, feature extraction, every uncertainty method and ablation, then print "
            "the report. A finished run folder is reused, so a second demo only re-scores."
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
    p.add_argument("--data-dir", metavar="DIR",
                   help="datasets folder (default: $ADUE_DATA_DIR, else a shared/data folder "
                        "found in the current directory or above, e.g. ../shared/data)")
    p.add_argument("--metric", default="roc_auc",
                   help="report metric(s): roc_auc (default), pr_auc, aurc, ece, comma list or all")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from adue.config import resolve_config
    from adue.report import build_report
    from adue.runner import cell_path, find_data_dir, run_cell

    t0 = time.perf_counter()
    data_dir = find_data_dir(args.data_dir)
    cfg = resolve_config(dataset=args.dataset, backbone=args.backbone, seed=args.seed,
                         profile=args.profile)
    print(f"adue demo: {args.backbone} on {args.dataset}, profile {args.profile}, seed {args.seed}; "
          f"data from {data_dir or 'the data layer default'}", file=sys.stderr)
    record = run_cell(cfg, args.results, runs_dir=args.runs_dir, data_dir=data_dir,
                      progress=not args.no_progress, raise_on_error=False)
    path = cell_path(args.results, cfg.profile, cfg.backbone, cfg.dataset, cfg.seed)
    if record["status"] != "complete":
        err = record.get("error") or {}
        print(f"adue: error: demo failed in {err.get('stage')}: {err.get('type')}: "
              f"{err.get('message')} (recorded in {path})", file=sys.stderr)
        return 1
    print(build_report(args.results, fmt="md", metrics=args.metric, paper=True))
    t = record["timings_s"]
    print(
        f"demo done in {time.perf_counter() - t0:.0f} s (fine-tune {t.get('finetune', 0):.0f} s"
        f"{', reused' if record.get('finetune_reused') else ''}, extract {t.get('extract', 0):.0f} s, "
        f"methods {t.get('methods', 0):.0f} s); cell JSON: {path}",
        file=sys.stderr,
    )
    return 0
