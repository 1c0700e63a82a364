"""The hand-written part of results/README.md: every figure recomputed from the committed cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from adue.cli.report_cmd import HAND_MARKER
from adue.report import build_report, load_results
from adue.report.claims import check_claims, unreferenced_figures

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "results" / "README.md"
CELLS = Path(__file__).parent / "fixtures" / "cells"


def _hand() -> str:
    text = README.read_text(encoding="utf-8")
    assert HAND_MARKER in text, "results/README.md lost its hand-written section marker"
    return text.split(HAND_MARKER, 1)[1]


def test_every_quoted_figure_matches_the_committed_cells():
    rs = load_results(ROOT / "results")
    assert len(rs.cells) >= 25, f"expected the committed MiniLM row, found {len(rs.cells)} cells"
    hand = _hand()
    assert hand.count("<!--=") >= 60  # the references are there (not an empty section)
    assert check_claims(hand, rs) == []


def test_no_figure_without_a_reference():
    assert unreferenced_figures(_hand()) == []


def test_generated_part_regenerates_from_the_committed_cells():
    text = README.read_text(encoding="utf-8").split(HAND_MARKER, 1)[0].rstrip("\n") + "\n"
    title, _, rest = text.partition("\n")
    command = ("Generated from the cell JSONs by `adue report results --format md --paper -o "
               "results/README.md --plots results/plots`; rerun it to regenerate.")
    built = build_report(ROOT / "results", fmt="md", paper=True)
    b_title, _, b_rest = built.partition("\n")
    assert (title, rest) == (b_title, f"\n{command}\n{b_rest}")


def test_check_claims_hand_cases():
    rs = load_results(CELLS)
    # fixture AdUE = SR + 0.01 in every MiniLM SST-2 seed: +1.0 ± 0.0, 5/5; SR mean 86.0
    ok = ("AdUE − SR +1.0 ± 0.0<!--= paired roc_auc adue-sr sst2 minilm --> "
          "(5/5<!--= wins roc_auc adue-sr sst2 minilm -->), SR 86.0<!--= mean roc_auc sr sst2 minilm -->, "
          "SmolLM2 SR 81.0 ± 1.4<!--= pm roc_auc sr sst2 smollm2 -->, "
          "+3.0 to +3.0<!--= range pmean roc_auc adue-sr sst2 smollm2,mpnet -->")
    bad = check_claims(ok, rs)
    # the range over SmolLM2 (+3.0) and MPNet (+1.0) is +1.0 to +3.0, not +3.0 to +3.0
    assert bad == ["range pmean roc_auc adue-sr sst2 smollm2,mpnet: the prose says '+3.0 to +3.0', "
                   "the cells give '+1.0 to +3.0'"]
    assert check_claims("SR 86.1<!--= mean roc_auc sr sst2 minilm -->", rs) == [
        "mean roc_auc sr sst2 minilm: the prose says '86.1', the cells give '86.0'"]
    assert check_claims("SR high<!--= mean roc_auc sr sst2 minilm -->", rs)[0].startswith(
        "no figure of the right shape")
    assert "cannot be computed" in check_claims("1.0<!--= mean roc_auc md_sn sst2 smollm2 -->", rs)[0]
    # counts: complete fixture cells are MiniLM SST-2 x 5 and CoLA x 3 (seed 4 failed), SmolLM2 x 2
    assert check_claims("8<!--= ncells minilm --> cells, 5<!--= nseeds minilm sst2 -->, "
                        "2<!--= ncells smollm2 -->", rs) == []
    # the fixture's AdUE and held-out AdUE record the same best_params in all eight complete
    # MiniLM cells; SR searches nothing, so that pair cannot be computed
    assert check_claims("8/8<!--= nsame adue-adue_heldout minilm -->", rs) == []
    assert check_claims("7/8<!--= nsame adue-adue_heldout minilm -->", rs) == [
        "nsame adue-adue_heldout minilm: the prose says '7/8', the cells give '8/8'"]
    assert "cannot be computed" in check_claims("1/1<!--= nsame adue-sr minilm -->", rs)[0]
    assert check_claims("4<!--= nseeds minilm cola -->", rs) == [
        "nseeds minilm cola: the prose says '4', the cells give '3'"]
    # figures without a reference are found; names (SST-2, L2, Table 1) and code are not figures
    assert unreferenced_figures("SST-2 with L2 (Table 1) `x = 3` 86.0<!--= mean a b c d --> ok") == []
    assert unreferenced_figures("AdUE gains 1.2 on News") == ["AdUE gains 1.2 on News"]


def test_refill_claims_rewrites_only_the_figures():
    from adue.report.claims import refill_claims

    rs = load_results(CELLS)
    # fixture AdUE = SR + 0.01 on every MiniLM SST-2 seed: +1.0 ± 0.0 and 5/5; SR mean 86.0
    stale = ("**holds**: +2.5 ± 0.7<!--= paired roc_auc adue-sr sst2 minilm --> "
             "(3/5<!--= wins roc_auc adue-sr sst2 minilm -->), SR 86.0<!--= mean roc_auc sr sst2 minilm -->.")
    text, changes = refill_claims(stale, rs)
    assert text == ("**holds**: +1.0 ± 0.0<!--= paired roc_auc adue-sr sst2 minilm --> "
                    "(5/5<!--= wins roc_auc adue-sr sst2 minilm -->), SR 86.0<!--= mean roc_auc sr sst2 minilm -->.")
    assert changes == ["paired roc_auc adue-sr sst2 minilm: +2.5 ± 0.7 -> +1.0 ± 0.0",
                       "wins roc_auc adue-sr sst2 minilm: 3/5 -> 5/5"]
    assert check_claims(text, rs) == []
    with pytest.raises(ValueError, match="cannot be computed"):
        refill_claims("1.0<!--= mean roc_auc md_sn sst2 smollm2 -->", rs)
    with pytest.raises(ValueError, match="No figure"):
        refill_claims("high<!--= mean roc_auc sr sst2 minilm -->", rs)


def test_report_refill_figures_option(tmp_path):
    from adue.cli import main
    from adue.cli.report_cmd import HAND_MARKER

    out = tmp_path / "README.md"
    out.write_text("old\n\n" + HAND_MARKER + "\nSR 70.0<!--= mean roc_auc sr sst2 minilm --> here.\n",
                   encoding="utf-8")
    assert main(["report", str(CELLS), "--metric", "roc_auc", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").endswith("\nSR 70.0<!--= mean roc_auc sr sst2 minilm --> here.\n")
    assert main(["report", str(CELLS), "--metric", "roc_auc", "-o", str(out), "--refill-figures"]) == 0
    assert out.read_text(encoding="utf-8").endswith("\nSR 86.0<!--= mean roc_auc sr sst2 minilm --> here.\n")
