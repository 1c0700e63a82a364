"""The "beyond the paper" adue_auto table: values and paired differences by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from adue.report import build_report, load_results
from adue.report.cells import ResultSet
from adue.report.tables import AUTO_ROWS, auto_loss_tables, render_table

CELLS = Path(__file__).parent / "fixtures" / "cells"

# ROC-AUC per seed (1, 2, 3) on one backbone x dataset.
AUC = {
    "sr": (0.80, 0.82, 0.84),
    "adue": (0.81, 0.83, 0.80),
    "adue_heldout": (0.79, 0.80, 0.81),
    "adue_auto": (0.83, 0.82, 0.86),
    "adue_auto_heldout": (0.82, 0.84, 0.83),
}


def _cells() -> ResultSet:
    cells = []
    for i, seed in enumerate((1, 2, 3)):
        methods = {v: {"status": "ok", "metrics": {"roc_auc": vals[i]}} for v, vals in AUC.items()}
        cells.append({"cell": {"profile": "cpu", "backbone": "minilm", "dataset": "sst2",
                               "seed": seed}, "methods": methods})
    return ResultSet(root=Path("."), cells=cells)


def test_auto_table_values_and_paired_differences_by_hand():
    table, paired = auto_loss_tables(_cells(), "cpu", "roc_auc")
    col = ("minilm", "sst2")
    assert table.rows == list(AUTO_ROWS) and table.key == "auto"
    assert table.values[("adue_auto", col)].mean == pytest.approx((0.83 + 0.82 + 0.86) / 3)
    assert table.values[("sr", col)].mean == pytest.approx(0.82)
    # adue_auto - AdUE per seed: +0.02, -0.01, +0.06 -> mean 0.0233, better in 2 of 3 seeds
    assert paired.key == "auto_paired" and paired.rows == ["adue_auto-adue", "adue_auto-sr"]
    assert paired.values[("adue_auto-adue", col)].mean == pytest.approx(0.07 / 3)
    assert paired.wins[("adue_auto-adue", col)] == (2, 3)
    # adue_auto - SR: +0.03, 0.00, +0.02 -> better in 2 of 3 (a tie is not a win)
    assert paired.values[("adue_auto-sr", col)].mean == pytest.approx(0.05 / 3)
    assert paired.wins[("adue_auto-sr", col)] == (2, 3)
    text = render_table(paired, "md")
    assert "| AdUE auto loss − AdUE | +2.3 ± 3.5 (2/3) |" in text, text


def test_auto_table_absent_for_results_without_auto_variants():
    rs = load_results(CELLS)
    for profile in rs.profiles():
        assert auto_loss_tables(rs, profile, "roc_auc") == []


def test_auto_tables_appear_in_the_report_after_the_extra_table(tmp_path):
    import json

    for c in _cells().cells:
        c.update(schema_version=_schema(), status="complete")
        p = tmp_path / f"seed{c['cell']['seed']}.json"
        p.write_text(json.dumps(c), encoding="utf-8")
    text = build_report(tmp_path, fmt="md", metrics="roc_auc")
    extra = text.index("Beyond the paper: entropy")
    auto = text.index("Beyond the paper: AdUE that picks its own loss")
    assert extra < auto < text.index("paired differences A − B")


def _schema() -> int:
    from adue.runner import SCHEMA_VERSION

    return SCHEMA_VERSION
