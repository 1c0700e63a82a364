"""The whole report: every table layout for the chosen metrics, with notes, in one document."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

from adue.report.cells import ResultSet, load_results
from adue.report.labels import METRICS, backbone_label, dataset_label
from adue.report.paper import paper_model_label, stand_in
from adue.report.tables import (
    FAMILY_LABELS,
    FULL_SEEDS,
    Table,
    accuracy_table,
    auto_loss_tables,
    classifier_table,
    family_blocks,
    method_table,
    paired_table,
    paper_accuracy_table,
    paper_method_table,
    render_table,
    tables_to_csv,
)
from adue.variants import ABLATION_ROWS, EXTRA_ROWS, L2_ROWS, MAIN_ROWS, SN_ROWS, VARIANTS

__all__ = ["REPORT_METRICS", "FORMATS", "build_report", "cap_lines", "check_metrics",
           "deviation_lines", "report_tables"]

#: Metrics with their own section, in order.
REPORT_METRICS = ("roc_auc", "pr_auc", "aurc", "ece")
FORMATS = ("md", "latex", "csv")

_SCORE_ROWS = ("sr",) + tuple(v for v in VARIANTS if v.startswith("adue"))


def check_metrics(metrics: Sequence[str] | str | None) -> list[str]:
    """The report metrics named by ``metrics`` (``None`` / ``"all"``: every one); a bad name
    raises ``ValueError`` listing the valid ones."""
    if metrics is None or metrics == "all":
        return list(REPORT_METRICS)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    bad = [m for m in metrics if m not in REPORT_METRICS]
    if bad or not metrics:
        raise ValueError(
            f"The 'metric' parameter of the report must be one of {list(REPORT_METRICS)} or "
            f"'all'. Got {bad or metrics!r} instead."
        )
    return list(dict.fromkeys(metrics))


def _metric_blocks(rs: ResultSet, profile: str, metric: str, paper: bool) -> list:
    """Blocks (heading / text / table) of one metric's section."""
    title, higher = METRICS[metric]
    direction = "higher is better" if higher else "lower is better"
    blocks: list = [("h2", f"{title} ({direction})")]
    if metric == "ece":
        blocks.append(("text",
            "ECE (15 equal-width bins) and the Brier score of the fine-tuned classifier, with its "
            "maximum softmax probability as the confidence. These describe the classifier, not the "
            "uncertainty scores, so they are the same for every method and shown once per "
            "backbone. The second table treats 1 - U of the scores that are error probabilities "
            "(SR and the AdUE heads) as a confidence and measures its calibration."))
        for m in ("ece", "brier"):
            t = classifier_table(rs, profile, m)
            if t is not None:
                blocks.append(("table", t))
        t = method_table(rs, profile, "ece_score", _SCORE_ROWS, key="score_ece",
                         title="ECE of 1 - U (score as confidence)")
        if t is not None:
            blocks.append(("table", t))
        return blocks
    for family, backbones in family_blocks(rs, profile):
        blocks += _family_blocks(rs, profile, metric, paper, family, backbones)
    return blocks


_LAYOUTS = (
    ("main", MAIN_ROWS, "Table 1 layout: baselines on L2-normalised features, SR, AdUE"),
    ("extra", EXTRA_ROWS, "Beyond the paper: entropy and the AdUE head trained on the "
                          "validation split (rows the LoRA never saw; 5-fold CV search)"),
    ("ablation", ABLATION_ROWS, "Ablations (Tables 2-4 layout): loss terms and head initialisation"),
    ("l2", L2_ROWS, "Raw vs L2-normalised features (Tables 7-8 layout)"),
    ("sn", SN_ROWS + ("md_l2", "rmd_l2", "rde_l2"),
     "Spectral-normalised head features (Appendix B.1; n/a: single-Linear head)"),
)


def _family_blocks(rs: ResultSet, profile: str, metric: str, paper: bool, family: str,
                   backbones: list[str]) -> list:
    """The tables of one metric for one block of backbones (encoders or decoders)."""
    title = METRICS[metric][0]
    block = f"{FAMILY_LABELS[family]}: " + ", ".join(backbone_label(b) for b in backbones)
    blocks: list = []
    for key, rows, ttl in _LAYOUTS:
        t = method_table(rs, profile, metric, rows, key=key, backbones=backbones,
                         title=f"{title} x 100 — {ttl} — {block}")
        if t is None or (key == "sn" and not any(r in SN_ROWS for r in t.rows)):
            continue
        blocks.append(("table", t))
        if paper and key not in ("extra", "sn"):
            p = paper_method_table(t)
            if p is not None:
                blocks.append(("table", p))
        if key == "extra":
            for a in auto_loss_tables(rs, profile, metric, backbones):
                a.title += f" — {block}"
                blocks.append(("table", a))
    t = paired_table(rs, profile, metric, backbones=backbones)
    if t is not None:
        t.title += f" — {block}"
        blocks.append(("table", t))
    return blocks


def _summary_lines(rs: ResultSet, profile: str) -> list[str]:
    cells = list(rs.of(profile))
    seeds = sorted({c["cell"]["seed"] for c in cells})
    lines = [
        f"Profile `{profile}`: {len(cells)} complete cell(s); backbones "
        + ", ".join(f"{backbone_label(b)}" + (f" (stand-in for {paper_model_label(m)})"
                                               if (m := stand_in(b)) else "")
                    for b in rs.backbones(profile))
        + "; datasets " + ", ".join(dataset_label(d) for d in rs.datasets(profile))
        + f"; seeds {', '.join(str(s) for s in seeds)}.",
    ]
    counts = Counter((c["cell"]["backbone"], c["cell"]["dataset"]) for c in cells)
    short = [f"{backbone_label(b)}/{dataset_label(d)}: {n}" for (b, d), n in sorted(counts.items())
             if n < FULL_SEEDS]
    if short:
        lines.append(f"Cells with fewer than {FULL_SEEDS} seeds: " + "; ".join(short) + ".")
    return lines


def _search_lines(rs: ResultSet, profile: str) -> list[str]:
    lines = []
    for v in VARIANTS.values():
        if not v.searched:
            continue
        fell_back = []
        chosen: Counter = Counter()
        total = 0
        for c in rs.of(profile):
            e = c.get("methods", {}).get(v.name)
            if not e or e.get("status") != "ok":
                continue
            total += 1
            if e.get("search_fallback"):
                fell_back.append(f"{c['cell']['backbone']}/{c['cell']['dataset']}/seed{c['cell']['seed']}")
            bp = e.get("best_params")
            if isinstance(bp, dict) and bp:
                chosen[", ".join(f"{k}={bp[k]}" for k in sorted(bp))] += 1
        if not total:
            continue
        line = f"`{v.name}`: "
        if chosen:
            top, n = chosen.most_common(1)[0]
            line += f"most often chosen ({n} of {total}): {top}"
        else:
            line += f"{total} cell(s), no chosen parameters recorded"
        if fell_back:
            line += (f"; search fell back to the default configuration in {len(fell_back)} cell(s) "
                     f"({', '.join(fell_back)})")
        lines.append(line + ".")
    return lines


def _failure_lines(rs: ResultSet, profile: str | None) -> list[str]:
    lines = []
    for c in rs.failed:
        if profile is not None and c["cell"]["profile"] != profile:
            continue
        err = c.get("error") or {}
        cell = c["cell"]
        lines.append(f"Cell {cell['backbone']}/{cell['dataset']}/seed{cell['seed']} failed in "
                     f"{err.get('stage', '?')}: {err.get('type', '')}: {err.get('message', '')}")
    failed_variants: dict[str, list[str]] = {}
    not_applicable: dict[str, set[str]] = {}
    for c in rs.of(profile) if profile is not None else rs.cells:
        for name, e in c.get("methods", {}).items():
            if e.get("status") == "not_applicable":
                not_applicable.setdefault(name, set()).add(str(e.get("reason", "?")))
            elif e.get("status") != "ok":
                failed_variants.setdefault(name, []).append(
                    f"{c['cell']['backbone']}/{c['cell']['dataset']}/seed{c['cell']['seed']} "
                    f"({e.get('error', '?')})")
    for c in rs.of(profile) if profile is not None else rs.cells:
        for w in c.get("warnings") or []:
            cell = c["cell"]
            lines.append(f"Warning, {cell['backbone']}/{cell['dataset']}/seed{cell['seed']}: {w}")
    for name, where in failed_variants.items():
        lines.append(f"Variant `{name}` failed in {len(where)} cell(s): " + "; ".join(where[:5])
                     + (" ..." if len(where) > 5 else ""))
    for name, reasons in not_applicable.items():
        lines.append(f"Variant `{name}` not applicable: " + "; ".join(sorted(reasons)))
    return lines


def _fmt_setting(v) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def cap_lines(rs: ResultSet, profile: str) -> list[str]:
    """One line per (backbone, dataset) of ``rs`` on which ``profile`` sets ``per_backbone``
    caps (:func:`adue.config.backbone_caps`): each capped setting with the value the profile
    gives the dataset's other backbones, the cells it covers and the cap's reason."""
    from adue.config import PROFILES, backbone_caps

    counts = Counter((c["cell"]["backbone"], c["cell"]["dataset"]) for c in rs.of(profile))
    lines = []
    for (backbone, dataset), n in sorted(counts.items()):
        caps = backbone_caps(profile, backbone, dataset)
        if caps is None:
            continue
        prof = PROFILES[profile]
        base = {**prof["settings"], **prof["per_dataset"].get(dataset, {})}
        what = ", ".join(f"`{k}` {_fmt_setting(v)} (other backbones: {_fmt_setting(base.get(k))})"
                         for k, v in caps["settings"].items())
        lines.append(f"{backbone_label(backbone)} / {dataset_label(dataset)} ({n} cell"
                     f"{'s' if n > 1 else ''}): {what}. Why: {caps['why']}")
    return lines


def deviation_lines(rs: ResultSet, profile: str) -> list[str]:
    """One line per (backbone, dataset, differing settings): the cells' recorded config
    against what ``profile`` resolves to today for that dataset and backbone
    (:func:`adue.config.config_differences`; execution fields such as paths are ignored), with
    the seeds it applies to; a cell the profile no longer resolves for (a user dataset folder
    that is gone) is listed as not compared, with the reason. Empty when every cell ran the
    profile as it stands."""
    from adue.config import config_differences, resolve_config

    groups: dict[tuple[str, str, str], list[int]] = {}
    for c in rs.of(profile):
        cell = c["cell"]
        try:
            now = resolve_config(cell["dataset"], cell["backbone"], cell["seed"], profile)
        except (ValueError, KeyError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            what = f"not compared, the profile does not resolve for it now ({first})"
        else:
            diff = config_differences(c.get("config") or {}, now)
            if not diff:
                continue
            what = ", ".join(f"`{k}` {_fmt_setting(a)} (profile now: {_fmt_setting(b)})"
                             for k, (a, b) in sorted(diff.items()))
        groups.setdefault((cell["backbone"], cell["dataset"], what), []).append(cell["seed"])
    lines = []
    for (backbone, dataset, what), seeds in sorted(groups.items()):
        which = ", ".join(str(x) for x in sorted(seeds))
        lines.append(f"{backbone_label(backbone)} / {dataset_label(dataset)}, "
                     f"seed{'s' if len(seeds) > 1 else ''} {which}: {what}")
    return lines


def report_tables(rs: ResultSet, *, metrics: Sequence[str] | str | None = None,
                  paper: bool = False) -> list[tuple[str, list]]:
    """``[(profile, blocks)]``: blocks are ``("h2"|"h3"|"text", str)`` or ``("table", Table)``."""
    metrics = check_metrics(metrics)
    out = []
    for profile in rs.profiles():
        blocks: list = [("text", line) for line in _summary_lines(rs, profile)]
        caps = cap_lines(rs, profile)
        if caps:
            blocks.append(("h2", "Caps the profile sets for one backbone"))
            blocks.append(("text", f"Settings the `{profile}` profile changes for one backbone on "
                                   "one dataset (`per_backbone` in `src/adue/profiles.json`), to fit "
                                   "the CPU budget; deviations from the profile's recipe that every "
                                   "such cell shares:"))
            blocks += [("text", "- " + s) for s in caps]
        deviations = deviation_lines(rs, profile)
        if deviations:
            blocks.append(("h2", "Settings that differ from the profile"))
            blocks.append(("text", f"Cells whose recorded settings differ from what the `{profile}` "
                                   "profile gives today (grid `[overrides]`, command-line options, "
                                   "or a profile changed since they ran):"))
            blocks += [("text", "- " + s) for s in deviations]
        acc = accuracy_table(rs, profile)
        if acc is not None:
            blocks += [("h2", "Accuracy"), ("table", acc)]
            if paper:
                p = paper_accuracy_table(acc)
                if p is not None:
                    blocks.append(("table", p))
        for metric in metrics:
            blocks += _metric_blocks(rs, profile, metric, paper)
        search = _search_lines(rs, profile)
        if search:
            blocks.append(("h2", "AdUE hyper-parameter search"))
            blocks += [("text", "- " + s) for s in search]
        fails = _failure_lines(rs, profile)
        if fails:
            blocks.append(("h2", "Failures and warnings"))
            blocks += [("text", "- " + s) for s in fails]
        out.append((profile, blocks))
    return out


_CONVENTIONS = (
    "Values are mean ± sample standard deviation (ddof = 1) x 100 over seeds (LoRA training "
    "seeds); `(n=k)` marks a cell backed by fewer than {full} seeds. Bold: the best mean of a "
    "column as displayed (max for ROC-AUC / PR-AUC / accuracy, min for AURC / ECE / Brier). "
    "Rank: in each column the rows are ranked on their unrounded means (1 = best, ties "
    "averaged); the Rank column is the mean over the columns. The uncertainty metrics treat the "
    "fine-tuned model's test-split misclassifications as the positive class."
)


def build_report(results_dir: str | os.PathLike | ResultSet, *, fmt: str = "md",
                 metrics: Sequence[str] | str | None = None, paper: bool = False) -> str:
    """The report of a results folder as one string in ``fmt`` (``md``, ``latex`` or ``csv``).

    ``metrics`` chooses the sections (default all of :data:`REPORT_METRICS`); ``paper`` adds,
    below our tables, the paper's numbers for the models our backbones stand in for.
    """
    if fmt not in FORMATS:
        raise ValueError(f"The 'format' parameter of the report must be one of {list(FORMATS)}. Got {fmt!r} instead.")
    rs = results_dir if isinstance(results_dir, ResultSet) else load_results(results_dir)
    sections = report_tables(rs, metrics=metrics, paper=paper)
    if fmt == "csv":
        return tables_to_csv([b[1] for _, blocks in sections for b in blocks if b[0] == "table"])
    parts: list[str] = []
    if fmt == "md":
        parts.append(f"# adue results: `{rs.root.name}`")
        parts.append(_CONVENTIONS.format(full=FULL_SEEDS))
    else:
        parts.append(f"% adue results: {rs.root.name}")
        parts.append("% " + _CONVENTIONS.format(full=FULL_SEEDS).replace("`", ""))
    if rs.skipped:
        skipped = "; ".join(f"{p} ({why})" for p, why in rs.skipped)
        parts.append(("Skipped files: " if fmt == "md" else "% Skipped files: ") + skipped)
    if not rs.cells:
        parts.append(("" if fmt == "md" else "% ") + "No complete cell yet.")
        parts += [("- " if fmt == "md" else "% ") + s for s in _failure_lines(rs, None)]
    for profile, blocks in sections:
        if len(sections) > 1:
            parts.append(f"# Profile `{profile}`" if fmt == "md" else f"\\section*{{Profile {profile}}}")
        for kind, payload in blocks:
            if kind == "table":
                parts.append(render_table(payload, fmt))
            elif kind in ("h2", "h3"):
                level = "##" if kind == "h2" else "###"
                parts.append(f"{level} {payload}" if fmt == "md" else f"\\subsection*{{{payload}}}")
            else:
                parts.append(payload if fmt == "md" else "% " + payload)
    sep = "\n\n"
    text = sep.join(parts) + "\n"
    if fmt == "md":
        # consecutive list items belong together
        text = text.replace("\n\n- ", "\n- ")
    return text


__all__ += ["Table"]
