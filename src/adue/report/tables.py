"""The paper's table layouts built from cell JSONs, rendered as Markdown, LaTeX or CSV.

Layouts (methods as rows, one column per backbone x dataset, mean ± std x 100 over seeds,
best of each column in bold, mean rank column):

- ``main``: the paper's Table 1 rows (RMD, MD, RDE on L2-normalised features, SR, AdUE);
- ``extra``: rows the paper lacks (entropy, the AdUE head fitted on the validation split);
- ``ablation``: Tables 2-4 (loss terms and head initialisation);
- ``l2``: Tables 7-8 (distance baselines on raw vs L2-normalised features);
- ``accuracy``: Table 6 (backbones as rows, test accuracy of the fine-tuned models);
- ``classifier``: the classifier's ECE and Brier score (max softmax confidence), backbones as rows;
- ``paired``: paired differences ``A - B`` of one metric over the seeds both variants share
  (mean ± std x 100 of the per-seed differences, and in how many seeds A was better).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adue.report.cells import ResultSet, metric_values
from adue.report.labels import METRICS, backbone_label, dataset_label, order_datasets
from adue.report.paper import paper_model_label, paper_stat, stand_in
from adue.report.stats import Stat, best_rows, mean_ranks, summarize
from adue.variants import PAIRED_ROWS, VARIANTS
from adue.variants import labels as variant_labels

__all__ = [
    "Table",
    "method_table",
    "accuracy_table",
    "classifier_table",
    "paper_method_table",
    "paper_accuracy_table",
    "paired_table",
    "render_table",
    "tables_to_csv",
    "FULL_SEEDS",
    "FAMILY_LABELS",
    "family_of",
    "family_blocks",
]

#: Cells backed by fewer seeds than this are marked with ``(n=k)``.
FULL_SEEDS = 5

Column = tuple[str, str]  # (group, dataset); group is a backbone or paper model ("" for none)


@dataclass
class Table:
    """One table: ``values[(row, column)]`` are :class:`Stat` of fractions (shown x ``scale``)."""

    key: str
    title: str
    metric: str
    rows: list[str]
    row_labels: dict[str, str]
    columns: list[Column]
    group_labels: dict[str, str]
    values: dict[tuple[str, Column], Stat]
    higher_is_better: bool = True
    show_rank: bool = True
    row_header: str = "Method"
    source: str = "ours"
    profile: str = ""
    scale: float = 100.0
    decimals: int = 1
    notes: list[str] = field(default_factory=list)
    #: Bold the best row of each column (off for tables of differences).
    bold_best: bool = True
    #: Show a sign on every value (tables of differences).
    signed: bool = False
    #: ``wins[(row, column)] = (k, n)``: shown as ``k/n`` after the value.
    wins: dict[tuple[str, Column], tuple[int, int]] = field(default_factory=dict)
    #: ``(row, column)`` where the variant does not apply (every cell says ``not_applicable``).
    na: set[tuple[str, Column]] = field(default_factory=set)

    def means(self) -> dict[tuple[str, Column], float]:
        return {k: s.mean for k, s in self.values.items() if s.ok}

    def ranks(self) -> dict[str, float]:
        """Mean rank of each row over the columns (1 = best)."""
        return mean_ranks(self.means(), self.rows, self.columns, higher_is_better=self.higher_is_better)

    def best(self, column: Column) -> set[str]:
        """Rows showing the best value of ``column`` (compared as displayed)."""
        if not self.bold_best:
            return set()
        return best_rows(
            self.means(), self.rows, column, higher_is_better=self.higher_is_better,
            decimals=self.decimals, scale=self.scale,
        )

    def groups(self) -> list[str]:
        return list(dict.fromkeys(g for g, _ in self.columns))


# ------------------------------------------------------------------------------ builders
def _columns(rs: ResultSet, profile: str, datasets: Sequence[str] | None = None,
             backbones: Sequence[str] | None = None) -> list[Column]:
    ds = list(datasets) if datasets is not None else rs.datasets(profile)
    bs = [b for b in rs.backbones(profile) if backbones is None or b in backbones]
    return [(b, d) for b in bs for d in ds if any(True for _ in rs.of(profile, b, d))]


def family_of(backbone: str) -> str:
    """``"encoder"`` or ``"decoder"`` of a backbone name (its preset's ``family``; a local
    model's config); ``"other"`` when it cannot be told."""
    from adue.backbones import backbone_family

    try:
        return backbone_family(backbone) or "other"
    except (ValueError, KeyError, OSError):
        return "other"


#: Families in block order, with their headings.
FAMILY_LABELS: dict[str, str] = {"encoder": "encoders", "decoder": "decoders", "other": "other backbones"}


def family_blocks(rs: ResultSet, profile: str) -> list[tuple[str, list[str]]]:
    """``[(family, backbones)]`` of ``profile``'s backbones, encoders first, then decoders."""
    fams: dict[str, list[str]] = {}
    for b in rs.backbones(profile):
        fams.setdefault(family_of(b), []).append(b)
    return [(f, fams[f]) for f in FAMILY_LABELS if f in fams]


def _not_applicable(cells: list[dict], variant: str) -> bool:
    """True when every cell records ``variant`` as ``not_applicable`` (and at least one does)."""
    entries = [c.get("methods", {}).get(variant) for c in cells]
    return bool(entries) and all(e is not None and e.get("status") == "not_applicable" for e in entries)


def method_table(rs: ResultSet, profile: str, metric: str, rows: Sequence[str], *, key: str,
                 title: str, backbones: Sequence[str] | None = None) -> Table | None:
    """Methods as rows for ``metric`` (columns: ``backbones`` x datasets, default every
    backbone); rows without any value are dropped (None if none left). A column where every
    cell records the variant as ``not_applicable`` shows "n/a" (not a failure)."""
    columns = _columns(rs, profile, backbones=backbones)
    values: dict[tuple[str, Column], Stat] = {}
    na: set[tuple[str, Column]] = set()
    for row in rows:
        for col in columns:
            cells = list(rs.of(profile, *col))
            stat = summarize(metric_values(cells, row, metric))
            if stat.n:
                values[(row, col)] = stat
            elif _not_applicable(cells, row):
                na.add((row, col))
    kept = [r for r in rows if any((r, c) in values or (r, c) in na for c in columns)]
    if not kept:
        return None
    return Table(
        key=key, title=title, metric=metric, rows=kept,
        row_labels={r: VARIANTS[r].label if r in VARIANTS else r for r in kept},
        columns=columns, group_labels={b: backbone_label(b) for b, _ in columns},
        values=values, higher_is_better=METRICS[metric][1], profile=profile, na=na,
    )


def paired_table(rs: ResultSet, profile: str, metric: str,
                 pairs: Sequence[tuple[str, str]] = PAIRED_ROWS,
                 backbones: Sequence[str] | None = None) -> Table | None:
    """Per-seed paired differences ``metric(A) - metric(B)`` for each ``(A, B)`` in ``pairs``.

    A cell's value is the :class:`Stat` of the differences over the seeds where both variants
    have a finite value; ``wins`` counts the seeds where A is better (higher, or lower for
    AURC / ECE). Positive means A scores higher. None if no pair has a value.
    """
    columns = _columns(rs, profile, backbones=backbones)
    higher = METRICS[metric][1]
    values: dict[tuple[str, Column], Stat] = {}
    wins: dict[tuple[str, Column], tuple[int, int]] = {}
    labels: dict[str, str] = {}
    rows: list[str] = []
    for a, b in pairs:
        row = f"{a}-{b}"
        labels[row] = " − ".join(variant_labels([a, b]))
        for col in columns:
            diffs = []
            for c in rs.of(profile, *col):
                va, vb = metric_values([c], a, metric), metric_values([c], b, metric)
                if va and vb:
                    diffs.append(va[0] - vb[0])
            if diffs:
                values[(row, col)] = summarize(diffs)
                k = sum(1 for d in diffs if (d > 0 if higher else d < 0))
                wins[(row, col)] = (k, len(diffs))
        if any((row, c) in values for c in columns):
            rows.append(row)
    if not rows:
        return None
    better = "higher" if higher else "lower"
    return Table(
        key="paired", title=f"{METRICS[metric][0]} x 100 — paired differences A − B over seeds "
        f"(mean ± std; k/n: seeds where A is {better}, i.e. better)",
        metric=metric, rows=rows, row_labels=labels, columns=columns,
        group_labels={bb: backbone_label(bb) for bb, _ in columns}, values=values,
        higher_is_better=higher, show_rank=False, row_header="A − B", profile=profile,
        bold_best=False, signed=True, wins=wins,
    )


def _table6_order(datasets: Sequence[str]) -> list[str]:
    """Table 6 puts News first: News, SST-2, SST-5, CoLA, ToxiGen."""
    first = [d for d in ("20newsgroups", "sst2", "sst5", "cola", "toxigen") if d in datasets]
    return first + [d for d in datasets if d not in first]


def _backbone_table(rs: ResultSet, profile: str, datasets: Sequence[str],
                    value_of: Callable[[dict], float | None], **table_fields: Any) -> Table | None:
    """Backbones as rows, one column per dataset: the :class:`Stat` of ``value_of(cell)`` over seeds."""
    backbones = rs.backbones(profile)
    values = {}
    for b in backbones:
        for d in datasets:
            stat = summarize([value_of(c) for c in rs.of(profile, b, d)])
            if stat.n:
                values[(b, ("", d))] = stat
    if not values:
        return None
    return Table(
        rows=backbones, row_labels={b: backbone_label(b) for b in backbones},
        columns=[("", d) for d in datasets], group_labels={"": ""}, values=values,
        show_rank=False, row_header="Backbone", profile=profile, **table_fields,
    )


def accuracy_table(rs: ResultSet, profile: str) -> Table | None:
    """Table 6 layout: backbones as rows, test accuracy of the fine-tuned model per dataset."""
    return _backbone_table(
        rs, profile, _table6_order(rs.datasets(profile)),
        lambda c: c.get("accuracy", {}).get("test"),
        key="accuracy", title="Test accuracy of the fine-tuned models (Table 6 layout)",
        metric="accuracy",
    )


def classifier_table(rs: ResultSet, profile: str, metric: str) -> Table | None:
    """The classifier's ``ece`` or ``brier`` (max softmax confidence), backbones as rows.

    Read from the cell's ``classifier`` record (stored once per cell; schema-1 cells are
    upgraded on reading, see :func:`adue.runner.check_cell`).
    """
    return _backbone_table(
        rs, profile, rs.datasets(profile), lambda c: (c.get("classifier") or {}).get(metric),
        key=f"classifier_{metric}",
        title=f"{METRICS[metric][0]} of the fine-tuned classifier (max softmax probability as confidence)",
        metric=metric, higher_is_better=METRICS[metric][1],
    )


def paper_method_table(ours: Table) -> Table | None:
    """The paper's ROC-AUC for ``ours``'s rows, on the models our backbones stand in for.

    The rank is recomputed over the columns shown (the paper's own Rank columns span both
    models of its table).
    """
    if ours.metric != "roc_auc":
        return None
    columns: list[Column] = []
    for b, d in ours.columns:
        model = stand_in(b)
        if model is not None and (model, d) not in columns:
            columns.append((model, d))
    values = {}
    for row in ours.rows:
        for col in columns:
            stat = paper_stat("roc_auc", col[0], col[1], row)
            if stat is not None:
                values[(row, col)] = stat
    rows = [r for r in ours.rows if any((r, c) in values for c in columns)]
    if not rows:
        return None
    labels = ", ".join(
        f"{paper_model_label(m)} for {backbone_label(b)}"
        for b in ours.groups() if (m := stand_in(b)) is not None
    )
    return Table(
        key=f"paper_{ours.key}", title=f"Paper: {ours.title} ({labels})", metric=ours.metric,
        rows=rows, row_labels={r: ours.row_labels[r] for r in rows}, columns=columns,
        group_labels={m: paper_model_label(m) for m, _ in columns}, values=values,
        higher_is_better=ours.higher_is_better, show_rank=ours.show_rank, source="paper",
        profile=ours.profile,
        notes=["Paper numbers (5 seeds each); Rank recomputed over the columns shown."]
        if ours.show_rank else [],
    )


def paper_accuracy_table(ours: Table) -> Table | None:
    """The paper's Table 6 rows for the models our backbones stand in for."""
    models = [(b, m) for b in ours.rows if (m := stand_in(b)) is not None]
    values = {}
    for _, m in models:
        for col in ours.columns:
            stat = paper_stat("accuracy", m, col[1])
            if stat is not None:
                values[(m, col)] = stat
    rows = [m for _, m in models if any((m, c) in values for c in ours.columns)]
    if not rows:
        return None
    return Table(
        key="paper_accuracy", title="Paper: test accuracy (Table 6)", metric="accuracy",
        rows=rows, row_labels={m: f"{paper_model_label(m)} (for {backbone_label(b)})" for b, m in models},
        columns=ours.columns, group_labels={"": ""}, values=values, show_rank=False,
        row_header="Model", source="paper", profile=ours.profile,
    )


# ------------------------------------------------------------------------------ rendering
def _fmt_num(x: float, scale: float, decimals: int, signed: bool = False) -> str:
    return f"{x * scale:+.{decimals}f}" if signed else f"{x * scale:.{decimals}f}"


def _cell_text(table: Table, row: str, col: Column, fmt: str) -> str:
    stat = table.values.get((row, col))
    if (row, col) in table.na:
        return "n/a"
    if stat is None or not stat.ok:
        return "—" if fmt == "md" else "--"
    pm = " ± " if fmt == "md" else " $\\pm$ "
    text = _fmt_num(stat.mean, table.scale, table.decimals, table.signed)
    if math.isfinite(stat.std):
        text += pm + _fmt_num(stat.std, table.scale, table.decimals)
    if row in table.best(col):
        text = f"**{text}**" if fmt == "md" else f"\\textbf{{{text}}}"
    if (row, col) in table.wins:
        k, n = table.wins[(row, col)]
        text += f" ({k}/{n})"
    elif table.source == "ours" and stat.n < FULL_SEEDS:
        text += f" (n={stat.n})" if fmt == "md" else f"\\textsuperscript{{n={stat.n}}}"
    return text


def _col_header(table: Table, col: Column) -> str:
    name = dataset_label(col[1])
    if len(table.groups()) > 1 and col[0]:
        return f"{table.group_labels.get(col[0], col[0])} {name}"
    return name


def _rank_texts(table: Table) -> dict[str, str]:
    ranks = table.ranks()
    finite = [v for v in ranks.values() if math.isfinite(v)]
    best = round(min(finite), 1) if finite else None
    out = {}
    for r, v in ranks.items():
        if not math.isfinite(v):
            out[r] = ""
            continue
        out[r] = f"{v:.1f}"
        if best is not None and round(v, 1) == best:
            out[r] = f"**{out[r]}**"
    return out


def _md(table: Table) -> str:
    header = [table.row_header] + [_col_header(table, c) for c in table.columns]
    align = ["---"] + ["---:"] * len(table.columns)
    if table.show_rank:
        header.append("Rank ↓")
        align.append("---:")
    lines = [f"**{table.title}**", "", "| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    ranks = _rank_texts(table) if table.show_rank else {}
    for r in table.rows:
        cells = [table.row_labels.get(r, r)] + [_cell_text(table, r, c, "md") for c in table.columns]
        if table.show_rank:
            cells.append(ranks[r])
        lines.append("| " + " | ".join(cells) + " |")
    for note in table.notes:
        lines += ["", f"*{note}*"]
    return "\n".join(lines)


def _tex_escape(s: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("_", "\\_"),
                 ("#", "\\#"), ("±", "$\\pm$"), ("↓", "$\\downarrow$"), ("−", "$-$")):
        s = s.replace(a, b)
    return s


def _latex(table: Table) -> str:
    ncols = len(table.columns) + (1 if table.show_rank else 0)
    lines = [
        "\\begin{table}[ht]",
        "\\centering",
        "\\small",
        f"\\caption{{{_tex_escape(table.title)}}}",
        "\\begin{tabular}{l" + "c" * ncols + "}",
        "\\toprule",
    ]
    groups = table.groups()
    if len(groups) > 1 or (groups and groups[0]):
        parts = [""]
        for g in groups:
            width = sum(1 for c in table.columns if c[0] == g)
            parts.append(f"\\multicolumn{{{width}}}{{c}}{{{_tex_escape(table.group_labels.get(g, g))}}}")
        if table.show_rank:
            parts.append("")
        lines.append(" & ".join(parts) + " \\\\")
    header = [table.row_header] + [_tex_escape(dataset_label(c[1])) for c in table.columns]
    if table.show_rank:
        header.append("Rank $\\downarrow$")
    lines += [" & ".join(header) + " \\\\", "\\midrule"]
    ranks = _rank_texts(table) if table.show_rank else {}
    for r in table.rows:
        cells = [_tex_escape(table.row_labels.get(r, r))]
        cells += [_cell_text(table, r, c, "latex") for c in table.columns]
        if table.show_rank:
            rt = ranks[r]
            cells.append(f"\\textbf{{{rt.strip('*')}}}" if rt.startswith("**") else rt)
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines)


def render_table(table: Table, fmt: str = "md") -> str:
    """``table`` as Markdown (``"md"``) or LaTeX (``"latex"``)."""
    if fmt == "md":
        return _md(table)
    if fmt == "latex":
        return _latex(table)
    raise ValueError(f"The 'fmt' parameter of render_table must be one of {{'md', 'latex'}}. Got {fmt!r} instead.")


CSV_FIELDS = ("source", "profile", "table", "metric", "row", "group", "dataset", "mean", "std",
              "n", "best", "mean_rank")


def tables_to_csv(tables: Sequence[Table]) -> str:
    """All ``tables`` in one long CSV (one line per row x column; values as fractions, not x100)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for t in tables:
        ranks = t.ranks() if t.show_rank else {}
        for r in t.rows:
            for c in t.columns:
                stat = t.values.get((r, c))
                if stat is None:
                    continue
                rank = ranks.get(r, math.nan)
                w.writerow([
                    t.source, t.profile, t.key, t.metric, r, c[0], c[1],
                    repr(stat.mean), "" if not math.isfinite(stat.std) else repr(stat.std), stat.n,
                    int(r in t.best(c)), "" if not math.isfinite(rank) else f"{rank:.4f}",
                ])
    return buf.getvalue()


def dataset_columns(datasets: Sequence[str]) -> list[str]:
    """Datasets in the paper's column order (re-exported for plots)."""
    return order_datasets(datasets)


# ------------------------------------------------------- beyond the paper: adue_auto
#: Rows of the "AdUE that picks its own loss" table, and its paired comparisons.
AUTO_ROWS: tuple[str, ...] = ("sr", "adue", "adue_heldout", "adue_auto", "adue_auto_heldout")
AUTO_PAIRS: tuple[tuple[str, str], ...] = (("adue_auto", "adue"), ("adue_auto", "sr"))


def auto_loss_tables(rs: ResultSet, profile: str, metric: str,
                     backbones: Sequence[str] | None = None) -> list[Table]:
    """Beyond the paper: SR, AdUE, ``adue_heldout``, ``adue_auto``, ``adue_auto_heldout`` for
    ``metric``, then the paired differences ``adue_auto - AdUE`` and ``adue_auto - SR`` with
    win counts (:func:`paired_table`). Empty when no cell has an ``adue_auto*`` variant (so
    reports of older results are unchanged)."""
    auto = [r for r in AUTO_ROWS if r.startswith("adue_auto")]
    cells = [c for c in rs.of(profile) if backbones is None or c["cell"]["backbone"] in backbones]
    if not any(metric_values(cells, r, metric) for r in auto):
        return []
    out = []
    t = method_table(rs, profile, metric, AUTO_ROWS, key="auto", backbones=backbones,
                     title=f"{METRICS[metric][0]} x 100 — Beyond the paper: AdUE that picks its "
                           "own loss (beta = 0 and mean L2-SP added to the search)")
    if t is not None:
        out.append(t)
    p = paired_table(rs, profile, metric, AUTO_PAIRS, backbones=backbones)
    if p is not None:
        p.key = "auto_paired"
        out.append(p)
    return out
