"""PNG plots from cell JSONs (matplotlib, Agg backend).

- ``risk_coverage_<profile>_<backbone>_<dataset>.png``: selective risk vs coverage (test split,
  rows kept from the most certain), mean over seeds, one line per method; left panel the main
  methods, right panel the AdUE ablations.
- ``reliability_<profile>_<backbone>_<dataset>.png``: reliability diagram of the fine-tuned
  classifier (max softmax confidence), bins pooled over seeds, with the ECE of the pooled bins.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from adue._atomic import atomic_path
from adue.metrics import ece_from_sums
from adue.report.cells import ResultSet, load_results
from adue.report.labels import backbone_label, dataset_label
from adue.variants import ABLATION_ROWS, VARIANTS

__all__ = ["write_plots", "mean_risk_curves", "pooled_reliability"]

_MAIN_PANEL = ("sr", "entropy", "md_l2", "rmd_l2", "rde_l2", "adue", "adue_heldout")


def mean_risk_curves(cells: list[dict]) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, int]]]:
    """``(coverage, {variant: (mean risk over cells, number of cells)})`` from the stored curves."""
    coverage = None
    acc: dict[str, list[np.ndarray]] = {}
    for c in cells:
        curves = c.get("curves") or {}
        cov = curves.get("coverage")
        if cov is None:
            continue
        cov = np.asarray(cov, dtype=np.float64)
        if coverage is None:
            coverage = cov
        elif cov.shape != coverage.shape or not np.allclose(cov, coverage):
            continue
        for name, risk in (curves.get("risk") or {}).items():
            r = np.asarray([np.nan if v is None else v for v in risk], dtype=np.float64)
            acc.setdefault(name, []).append(r)
    if coverage is None:
        return np.zeros(0), {}
    return coverage, {k: (np.nanmean(np.vstack(v), axis=0), len(v)) for k, v in acc.items()}


def pooled_reliability(cells: list[dict]) -> dict | None:
    """Reliability bins summed over ``cells``: ``{"edges", "count", "confidence", "accuracy", "ece"}``.

    ``confidence`` / ``accuracy`` are per-bin means (NaN for empty bins); ``ece`` is
    :func:`adue.metrics.ece_from_sums` of the pooled bins.
    """
    count = conf = corr = None
    for c in cells:
        rel = (c.get("curves") or {}).get("reliability")
        if not rel:
            continue
        cnt = np.asarray(rel["count"], dtype=np.float64)
        if count is None:
            count, conf, corr = cnt.copy(), np.asarray(rel["confidence_sum"], float), np.asarray(rel["correct_sum"], float)
        elif cnt.shape == count.shape:
            count += cnt
            conf += np.asarray(rel["confidence_sum"], float)
            corr += np.asarray(rel["correct_sum"], float)
    if count is None or count.sum() == 0:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = conf / count
        mean_acc = corr / count
    return {
        "edges": np.linspace(0.0, 1.0, count.size + 1),
        "count": count,
        "confidence": mean_conf,
        "accuracy": mean_acc,
        "ece": ece_from_sums(count, conf, corr),
    }


def _plot_risk(ax, coverage, curves, names, title):
    for name in names:
        if name not in curves:
            continue
        risk, n = curves[name]
        label = VARIANTS[name].label if name in VARIANTS else name
        style = "--" if name == "sr" else "-"
        ax.plot(coverage, risk, style, label=f"{label} (n={n})", linewidth=1.4)
    ax.set_xlabel("coverage (fraction of test rows kept, most certain first)")
    ax.set_ylabel("selective risk (error rate of kept rows)")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def write_plots(results: str | os.PathLike | ResultSet, outdir: str | os.PathLike) -> list[Path]:
    """Write the risk-coverage and reliability PNGs for every (profile, backbone, dataset).

    Returns the paths written (files are replaced atomically).
    """
    # A bare Figure renders through the Agg canvas without touching pyplot's global backend.
    from matplotlib.figure import Figure

    rs = results if isinstance(results, ResultSet) else load_results(results)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig, name: str) -> None:
        path = outdir / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        written.append(path)

    for profile in rs.profiles():
        for b in rs.backbones(profile):
            for d in rs.datasets(profile):
                cells = list(rs.of(profile, b, d))
                if not cells:
                    continue
                where = f"{backbone_label(b)} / {dataset_label(d)} ({profile}, {len(cells)} seed(s))"
                coverage, curves = mean_risk_curves(cells)
                if curves:
                    fig = Figure(figsize=(12, 4.6))
                    axes = fig.subplots(1, 2, sharey=True)
                    _plot_risk(axes[0], coverage, curves, _MAIN_PANEL, f"Risk-coverage: {where}")
                    _plot_risk(axes[1], coverage, curves, ("sr",) + ABLATION_ROWS,
                               "AdUE ablations (SR dashed)")
                    save(fig, f"risk_coverage_{profile}_{b}_{d}.png")
                rel = pooled_reliability(cells)
                if rel is not None:
                    fig = Figure(figsize=(5.2, 6))
                    ax, axh = fig.subplots(
                        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
                    )
                    edges = rel["edges"]
                    width = edges[1] - edges[0]
                    centers = edges[:-1] + width / 2
                    ok = rel["count"] > 0
                    ax.bar(centers[ok], rel["accuracy"][ok], width=width * 0.9, alpha=0.7,
                           label="accuracy in bin", edgecolor="black", linewidth=0.5)
                    ax.plot(rel["confidence"][ok], rel["accuracy"][ok], "o", color="C3",
                            markersize=3, label="(mean confidence, accuracy)")
                    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
                    ax.set_ylabel("accuracy")
                    ax.set_ylim(0, 1)
                    ax.set_title(f"Reliability: {where}\nECE (pooled bins) = {rel['ece']:.3f}",
                                 fontsize=10)
                    ax.legend(fontsize=7, loc="upper left")
                    ax.grid(alpha=0.3)
                    axh.bar(centers, rel["count"], width=width * 0.9, color="gray")
                    axh.set_xlabel("confidence (max softmax probability)")
                    axh.set_ylabel("rows")
                    axh.set_xlim(0, 1)
                    save(fig, f"reliability_{profile}_{b}_{d}.png")
    return written
