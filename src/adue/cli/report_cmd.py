"""``adue report DIR``: the paper's tables (and plots) regenerated from cell JSONs."""

from __future__ import annotations

import argparse
import sys
import warnings

#: In a file written with ``--output``, everything after this line is kept on regeneration
#: (hand-written analysis under the generated tables).
HAND_MARKER = "<!-- adue report: everything below this line is written by hand and kept when the report is regenerated -->"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="print the paper's tables from a results folder (Markdown, LaTeX or CSV)",
        description=(
            "Read every cell JSON below DIR and print the paper's table layouts: Table 1 "
            "(methods x datasets per backbone), ablations (Tables 2-4), accuracy (Table 6), raw "
            "vs L2 features (Tables 7-8), for ROC-AUC, PR-AUC, AURC and ECE."
        ),
    )
    p.add_argument("results", metavar="DIR")
    p.add_argument("--format", dest="fmt", choices=("md", "latex", "csv"), default="md")
    p.add_argument("--metric", default="all",
                   help="roc_auc, pr_auc, aurc, ece, a comma-separated list, or all (default)")
    p.add_argument("--paper", action="store_true",
                   help="add the paper's numbers for the models our backbones stand in for")
    p.add_argument("--plots", metavar="OUTDIR", help="also write PNG plots there")
    p.add_argument("--output", "-o", metavar="FILE",
                   help="write the report to FILE instead of stdout; if FILE holds the hand-written "
                        "section marker, the text after it is kept")
    p.add_argument("--refill-figures", action="store_true",
                   help="with --output: recompute every referenced figure of the kept hand-written "
                        "section from the cells (src/adue/report/claims.py) and list the changes; "
                        "the words around them are kept, so reread the verdicts")
    p.set_defaults(func=_run)
    return p


def _command_line(args: argparse.Namespace) -> str:
    """The ``adue report`` command that regenerates ``args.output``."""
    parts = ["adue", "report", str(args.results), "--format", args.fmt]
    if args.metric != "all":
        parts += ["--metric", args.metric]
    if args.paper:
        parts.append("--paper")
    parts += ["-o", str(args.output)]
    if args.plots:
        parts += ["--plots", str(args.plots)]
    return " ".join(parts)


def _with_command(text: str, args: argparse.Namespace) -> str:
    """``text`` with a line after its title naming the command that wrote it."""
    title, _, rest = text.partition("\n")
    line = f"Generated from the cell JSONs by `{_command_line(args)}`; rerun it to regenerate."
    return f"{title}\n\n{line}\n{rest}"


def _keep_hand(text: str, old: str, rs, refill: bool) -> str:
    """``text`` followed by the hand-written section of ``old`` (figures refilled if asked)."""
    from adue.report.claims import refill_claims

    if HAND_MARKER not in old:
        return text
    hand = old.split(HAND_MARKER, 1)[1]
    if refill:
        try:
            hand, changes = refill_claims(hand, rs)
        except ValueError as exc:
            raise SystemExit(f"adue report: {exc}") from None
        for line in changes:
            print(f"adue: refilled {line}", file=sys.stderr)
    return text.rstrip("\n") + "\n\n" + HAND_MARKER + hand


def _run(args: argparse.Namespace) -> int:
    from adue._atomic import atomic_write_text
    from adue.outputs import check_output_dir, check_output_file
    from adue.report import build_report, check_metrics, load_results, write_plots

    check_metrics(args.metric)  # every option and output path checked before any work
    out = check_output_file(args.output, "--output") if args.output else None
    plots = check_output_dir(args.plots, "--plots") if args.plots else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rs = load_results(args.results)
    for w in caught:
        print(f"adue: warning: {w.message}", file=sys.stderr)
    text = build_report(rs, fmt=args.fmt, metrics=args.metric, paper=args.paper)
    if out is not None:
        if args.fmt == "md":
            text = _with_command(text, args)
        if args.fmt == "md" and out.is_file():
            text = _keep_hand(text, out.read_text(encoding="utf-8"), rs, args.refill_figures)
        atomic_write_text(out, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if plots is not None:
        paths = write_plots(rs, plots)
        print(f"wrote {len(paths)} plot(s) to {args.plots}", file=sys.stderr)
    return 0
