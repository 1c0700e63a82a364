"""Figures quoted in hand-written prose, checked against the cell JSONs.

Every figure in the hand-written part of a report carries a machine-readable reference right
after it, an HTML comment (invisible when the Markdown is rendered)::

    AdUE beats SR on News by +1.2 ± 0.3<!--= paired roc_auc adue-sr 20newsgroups minilm -->

The figure is the text just before the comment; its shape depends on the kind. Kinds (values
x 100, one decimal, as in the tables; ``A-B`` names a paired comparison):

- ``mean METRIC VARIANT DATASET BACKBONE``: mean over seeds (``62.3``);
- ``pm METRIC VARIANT DATASET BACKBONE``: mean ± std (``62.3 ± 1.0``);
- ``paired METRIC A-B DATASET BACKBONE``: mean ± std of the per-seed differences (``+1.2 ± 0.3``);
- ``pmean METRIC A-B DATASET BACKBONE``: the mean of the per-seed differences (``+1.2``);
- ``wins METRIC A-B DATASET BACKBONE``: seeds where A is better over seeds compared (``5/5``);
- ``npos METRIC A-B DATASETS BACKBONE``: how many of DATASETS (joined by ``+``) have a mean
  difference favouring A (``4``);
- ``rank METRIC LAYOUT VARIANT BACKBONE``: mean rank in a layout's table (``1.2``);
- ``acc DATASET BACKBONE``: test accuracy (``79.8``); ``paperacc DATASET MODEL``: the paper's;
- ``paper VARIANT DATASET MODEL``: the paper's ROC-AUC (``86.8``);
- ``paperdiff A-B DATASET MODEL``: difference of the paper's ROC-AUC means (``+1.5``);
- ``nsame A-B BACKBONE``: cells of the backbone where variants A and B chose the same
  ``best_params`` (their searched configuration), over cells that have both (``18/21``);
- ``nseeds BACKBONE``: the number of seeds behind each of the backbone's datasets (all equal);
  ``nseeds BACKBONE DATASET``: behind one dataset; ``ncells BACKBONE``: the backbone's cells;
- ``range KIND ARGS``: ``lo to hi`` over every value of KIND where one or more args are
  comma-separated lists (their product).

:func:`check_claims` returns the mismatches; :func:`unreferenced_figures` the digits left in
the prose once referenced figures, comments, code spans and names (SST-2, L2, Table 1) are
removed, so that an unchecked figure fails the test too.
"""

from __future__ import annotations

import itertools
import re

from adue.report.cells import ResultSet, metric_values
from adue.report.labels import METRICS
from adue.report.paper import paper_stat
from adue.report.stats import summarize
from adue.report.tables import AUTO_ROWS, method_table
from adue.variants import ABLATION_ROWS, EXTRA_ROWS, L2_ROWS, MAIN_ROWS, SN_ROWS

__all__ = ["REF", "check_claims", "claim_value", "refill_claims", "unreferenced_figures"]

#: A reference comment.
REF = re.compile(r"<!--=\s*(.*?)\s*-->")
_NUM = r"[+-]?\d+(?:\.\d+)?"
_SHAPES = {
    "pm": rf"{_NUM} ± {_NUM}", "paired": rf"{_NUM} ± {_NUM}", "wins": r"\d+/\d+",
    "nsame": r"\d+/\d+",
    "range": rf"{_NUM} to {_NUM}",
}
LAYOUTS = {"main": MAIN_ROWS, "extra": EXTRA_ROWS, "ablation": ABLATION_ROWS, "l2": L2_ROWS,
           "sn": SN_ROWS, "auto": AUTO_ROWS}
#: Names with digits that are not figures (and numbered-list markers, the "x 100" scale).
_NAMES = re.compile(
    r"SST-[25]|20 Newsgroups|L2-SP|L2|Tables? \d+(?:-\d+)?(?: and \d+)?|Appendix B\.1|"
    r"LLaMA-2-7B|Qwen2\.5-7B|MiniLM-L6-v2|SmolLM2|issue \d+|B\.1|x 100|^\s*\d+\. ",
    re.M,
)


def _f(x: float, signed: bool = False) -> str:
    return f"{x * 100:+.1f}" if signed else f"{x * 100:.1f}"


def _diffs(rs: ResultSet, profile: str, metric: str, pair: str, dataset: str, backbone: str):
    a, b = pair.split("-")
    out = []
    for c in rs.of(profile, backbone, dataset):
        va, vb = metric_values([c], a, metric), metric_values([c], b, metric)
        if va and vb:
            out.append(va[0] - vb[0])
    if not out:
        raise ValueError(f"no seeds with both {a} and {b} for {backbone}/{dataset}")
    return out


def _better(metric: str, d: float) -> bool:
    return d > 0 if METRICS[metric][1] else d < 0


def claim_value(rs: ResultSet, kind: str, args: list[str], profile: str = "cpu") -> float | str:
    """The value (a fraction, or a ready string for ``pm``/``paired``/``wins``/counts)."""
    if kind in ("mean", "pm"):
        metric, variant, dataset, backbone = args
        s = summarize(metric_values(list(rs.of(profile, backbone, dataset)), variant, metric))
        if not s.n:
            raise ValueError(f"no value of {variant} {metric} for {backbone}/{dataset}")
        return s.mean if kind == "mean" else f"{_f(s.mean)} ± {_f(s.std)}"
    if kind in ("paired", "pmean", "wins"):
        metric, pair, dataset, backbone = args
        d = _diffs(rs, profile, metric, pair, dataset, backbone)
        s = summarize(d)
        if kind == "pmean":
            return ("signed", s.mean)  # type: ignore[return-value]
        if kind == "paired":
            return f"{_f(s.mean, True)} ± {_f(s.std)}"
        return f"{sum(_better(metric, x) for x in d)}/{len(d)}"
    if kind == "npos":
        metric, pair, datasets, backbone = args
        n = sum(_better(metric, summarize(_diffs(rs, profile, metric, pair, d, backbone)).mean)
                for d in datasets.split("+"))
        return str(n)
    if kind == "rank":
        metric, layout, variant, backbone = args
        t = method_table(rs, profile, metric, LAYOUTS[layout], key=layout, title="",
                         backbones=[backbone])
        if t is None or variant not in t.rows:
            raise ValueError(f"no {layout} table with {variant} for {backbone}")
        return f"{t.ranks()[variant]:.1f}"
    if kind == "acc":
        dataset, backbone = args
        return summarize([c["accuracy"]["test"] for c in rs.of(profile, backbone, dataset)]).mean
    if kind in ("paperacc", "paper"):
        st = (paper_stat("accuracy", args[1], args[0]) if kind == "paperacc"
              else paper_stat("roc_auc", args[2], args[1], args[0]))
        if st is None:
            raise ValueError(f"the paper publishes no {kind} {args}")
        return st.mean
    if kind == "paperdiff":
        pair, dataset, model = args
        a, b = (paper_stat("roc_auc", model, dataset, v) for v in pair.split("-"))
        return ("signed", a.mean - b.mean)  # type: ignore[union-attr,return-value]
    if kind == "nsame":
        pair, backbone = args
        a, b = pair.split("-")
        chosen = [(c["methods"].get(a, {}).get("best_params"), c["methods"].get(b, {}).get("best_params"))
                  for c in rs.of(profile, backbone)]
        chosen = [(x, y) for x, y in chosen if x is not None and y is not None]
        if not chosen:
            raise ValueError(f"no cells of {backbone} where {a} and {b} both record best_params")
        return f"{sum(x == y for x, y in chosen)}/{len(chosen)}"
    if kind == "ncells":
        (backbone,) = args
        return str(sum(1 for _ in rs.of(profile, backbone)))
    if kind == "nseeds":
        if len(args) == 2:
            return str(sum(1 for _ in rs.of(profile, args[0], args[1])))
        (backbone,) = args
        counts = {sum(1 for _ in rs.of(profile, backbone, d)) for d in rs.datasets(profile)}
        if len(counts) != 1:
            raise ValueError(f"{backbone}'s datasets have different seed counts {sorted(counts)}")
        return str(counts.pop())
    raise ValueError(f"unknown reference kind {kind!r}")


def _text(v) -> str:
    if isinstance(v, tuple):
        return _f(v[1], signed=True)
    return v if isinstance(v, str) else _f(v)


def _expected(rs: ResultSet, spec: str, profile: str) -> str:
    kind, *args = spec.split()
    if kind != "range":
        return _text(claim_value(rs, kind, args, profile))
    inner, *rest = args
    vals = [claim_value(rs, inner, list(combo), profile)
            for combo in itertools.product(*(a.split(",") for a in rest))]
    nums = [v[1] if isinstance(v, tuple) else float(v) if isinstance(v, str) else v for v in vals]
    signed = isinstance(vals[0], tuple)
    scale = 1 if isinstance(vals[0], str) else 100
    lo, hi = min(nums), max(nums)
    if scale == 1:
        return f"{lo:.1f} to {hi:.1f}"
    return f"{_f(lo, signed)} to {_f(hi, signed)}"


def _figure(before: str, kind: str) -> re.Match | None:
    shape = _SHAPES.get(kind, _NUM if kind not in ("npos", "nseeds", "ncells") else r"\d+")
    return re.search(rf"({shape})\**\s*$", before)


def check_claims(text: str, rs: ResultSet, profile: str = "cpu") -> list[str]:
    """Mismatches between the referenced figures of ``text`` and the cells (empty: all agree)."""
    bad = []
    for m in REF.finditer(text):
        spec = m.group(1)
        kind = spec.split()[0]
        fig = _figure(text[: m.start()], kind if kind != "range" else "range")
        if fig is None:
            bad.append(f"no figure of the right shape before <!--= {spec} -->")
            continue
        try:
            want = _expected(rs, spec, profile)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            bad.append(f"{spec}: cannot be computed ({exc})")
            continue
        if _norm(fig.group(1)) != _norm(want):
            bad.append(f"{spec}: the prose says {fig.group(1)!r}, the cells give {want!r}")
    return bad


def refill_claims(text: str, rs: ResultSet, profile: str = "cpu") -> tuple[str, list[str]]:
    """``text`` with every referenced figure replaced by its value recomputed from ``rs``.

    Returns ``(new_text, changes)``, one ``"spec: old -> new"`` line per figure that changed.
    A reference with no figure before it, or one that cannot be computed, raises ``ValueError``
    naming it. The words around the figures are not touched: reread the verdicts after a refill.
    """
    out, changes, pos = [], [], 0
    for m in REF.finditer(text):
        spec = m.group(1)
        fig = _figure(text[: m.start()], spec.split()[0])
        if fig is None or fig.start(1) < pos:
            raise ValueError(f"No figure of the right shape before <!--= {spec} -->.")
        try:
            want = _expected(rs, spec, profile)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"The reference '{spec}' cannot be computed: {exc}") from exc
        old = fig.group(1)
        if _norm(old) != _norm(want):
            changes.append(f"{spec}: {old} -> {want}")
            old = want
        out.append(text[pos : fig.start(1)] + old + text[fig.end(1) : m.end()])
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), changes


def _norm(s: str) -> str:
    return s.replace("−", "-").replace("+0.0", "0.0").replace("-0.0", "0.0")


def unreferenced_figures(text: str) -> list[str]:
    """Digits left in ``text`` once referenced figures, comments, code and names are removed."""
    spans = []
    for m in REF.finditer(text):
        kind = m.group(1).split()[0]
        fig = _figure(text[: m.start()], kind)
        spans.append((fig.start(1) if fig else m.start(), m.end()))
    kept, pos = [], 0
    for a, b in spans:
        kept.append(text[pos:a])
        pos = b
    kept.append(text[pos:])
    rest = "".join(kept)
    rest = re.sub(r"<!--.*?-->", " ", rest, flags=re.S)
    rest = re.sub(r"`[^`]*`", " ", rest)
    rest = _NAMES.sub(" ", rest)
    return [ln.strip() for ln in rest.splitlines() if re.search(r"\d", ln)]
