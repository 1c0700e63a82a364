"""The cell runner: JSON schema and values, failures recorded, run reuse, curves, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from adue.cli import main
from adue.config import resolve_config
from adue.runner import (
    SCHEMA_VERSION,
    cell_is_finished,
    cell_path,
    check_cell,
    read_cell,
    run_cell,
)
from adue.variants import VARIANTS, get_variant, list_variants, resolve_variants

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import fake_pipeline  # noqa: E402

# A one-config AdUE "search" keeps the test fast; the variant table still asks for "paper".
TINY_SEARCH = {"lr": [1e-2], "epochs": [2], "alpha": [0.1], "beta": [0.1]}
METRICS = ("roc_auc", "pr_auc", "aurc")


@pytest.fixture
def fakes(monkeypatch):
    fake_pipeline.install(monkeypatch)
    return monkeypatch


def _cfg(dataset="sst2", seed=1, **kw):
    return resolve_config(dataset=dataset, backbone="minilm", seed=seed, profile="quick", **kw)


def _run(tmp_path, cfg=None, **kw):
    kw.setdefault("adue_search", TINY_SEARCH)
    kw.setdefault("progress", False)
    return run_cell(cfg or _cfg(), tmp_path / "results", runs_dir=tmp_path / "runs", **kw)


def test_variant_table():
    assert list_variants() == [
        "sr", "entropy", "md", "md_l2", "rmd", "rmd_l2", "rde", "rde_l2", "adue", "adue_bce",
        "adue_bce_l2sp", "adue_bce_reg", "adue_rand_cls", "adue_rand_linear", "adue_heldout",
    ]
    assert get_variant("md_l2").params == {"l2_normalize": True}
    assert get_variant("adue_bce_reg").params["loss"] == "bce_reg"
    assert get_variant("adue_rand_linear").params["init"] == "random_linear"
    held = get_variant("adue_heldout")
    assert held.fit_on == "validation" and held.params["search_cv"] == 5
    assert all(v.params["search"] == "paper" for v in VARIANTS.values() if v.method == "adue")
    with pytest.raises(ValueError, match=r"Unknown method variant\(s\) \['bogus'\]. Valid variants: sr, entropy"):
        resolve_variants("sr,bogus")


def test_cell_json_schema_and_values(fakes, tmp_path):
    record = _run(tmp_path)
    path = cell_path(tmp_path / "results", "quick", "minilm", "sst2", 1)
    assert path == tmp_path / "results" / "quick" / "minilm" / "sst2" / "seed1.json"
    data = read_cell(path)
    assert data == json.loads(json.dumps(record))
    assert data["schema_version"] == SCHEMA_VERSION and data["status"] == "complete"
    assert data["cell"] == {"profile": "quick", "backbone": "minilm", "dataset": "sst2", "seed": 1}
    assert data["config"] == _cfg().to_dict()
    assert data["versions"]["numpy"] == np.__version__ and data["versions"]["python"]
    assert "git_commit" in data and data["finetune_reused"] is False
    assert set(data["timings_s"]) == {"finetune", "extract", "methods", "total"}
    feats = {s: fake_pipeline.make_split(1, s, "sst2") for s in ("train", "validation", "test")}
    for s, f in feats.items():
        assert data["accuracy"][s] == pytest.approx(f.accuracy())
        assert data["n_errors"][s] == int(f.errors().sum()) > 0
    assert list(data["methods"]) == list_variants()
    for name, entry in data["methods"].items():
        assert entry["status"] == "ok", (name, entry.get("error"))
        for m in METRICS:
            assert np.isfinite(entry["metrics"][m]), (name, m)
        if VARIANTS[name].searched:
            assert set(entry["best_params"]) >= {"lr", "epochs", "alpha", "beta"}
            assert entry["search_fallback"] is None
            assert entry["params"]["search"] == TINY_SEARCH and "head" not in entry["params"]
    # values against references: SR = 1 - max softmax, scored with sklearn
    test = feats["test"]
    errors = test.errors()
    u_sr = 1.0 - test.probabilities().max(axis=1)
    sr = data["methods"]["sr"]["metrics"]
    assert sr["roc_auc"] == pytest.approx(roc_auc_score(errors, u_sr), abs=1e-12)
    assert sr["pr_auc"] == pytest.approx(average_precision_score(errors, u_sr), abs=1e-9)
    assert data["methods"]["adue_heldout"]["fit_split"] == "validation"
    # ECE / Brier describe the classifier: stored once per cell, not per variant
    conf = test.probabilities().max(axis=1)
    brier = float(np.mean((conf - (1 - errors)) ** 2))
    assert data["classifier"]["brier"] == pytest.approx(brier)
    for entry in data["methods"].values():
        assert "ece" not in entry["metrics"] and "brier" not in entry["metrics"]
    # SR's own-score calibration equals the classifier's (1 - U_SR is the max softmax)
    assert sr["ece_score"] == pytest.approx(data["classifier"]["ece"])
    assert sr["brier_score"] == pytest.approx(brier)
    assert data["data"] == {"spec": "sst2", "name": "sst2",
                            "fingerprint": fake_pipeline.fingerprint_of("sst2")}
    # curves: full coverage = test error rate; reliability counts cover the test rows
    curves = data["curves"]
    assert len(curves["coverage"]) == 100 and curves["coverage"][-1] == 1.0
    for name in list_variants():
        assert curves["risk"][name][-1] == pytest.approx(errors.mean(), abs=1e-5)
    rel = curves["reliability"]
    assert sum(rel["count"]) == test.n
    assert sum(rel["correct_sum"]) == pytest.approx(test.n - errors.sum())
    assert path.stat().st_size < 1_000_000
    assert cell_is_finished(path, _cfg().to_dict(), list_variants())
    assert not cell_is_finished(path, _cfg(max_train=10).to_dict())


def test_one_failing_variant_is_recorded_and_others_go_on(fakes, tmp_path):
    from adue.methods import method_class

    def boom(self, train, val=None):
        raise RuntimeError("md exploded")

    fakes.setattr(method_class("md"), "fit", boom)
    data = _run(tmp_path, methods=["sr", "md", "md_l2", "adue"])
    assert data["status"] == "complete"
    assert list(data["methods"]) == ["sr", "md", "md_l2", "adue"]
    for name in ("md", "md_l2"):
        assert data["methods"][name]["status"] == "failed"
        assert data["methods"][name]["error"] == "RuntimeError: md exploded"
        assert "md exploded" in data["methods"][name]["traceback"]
        assert name not in data["curves"]["risk"]
    assert data["methods"]["sr"]["status"] == "ok" and data["methods"]["adue"]["status"] == "ok"


def test_failing_run_is_recorded(monkeypatch, tmp_path):
    fake_pipeline.install(monkeypatch, fail_datasets=("cola",))
    cfg = _cfg("cola")
    with pytest.raises(RuntimeError, match="fake fine-tuning failure"):
        _run(tmp_path, cfg, methods="sr")
    data = read_cell(cell_path(tmp_path / "results", "quick", "minilm", "cola", 1))
    assert data["status"] == "failed"
    assert data["error"]["stage"] == "finetune" and data["error"]["type"] == "RuntimeError"
    assert not cell_is_finished(cell_path(tmp_path / "results", "quick", "minilm", "cola", 1))
    record = _run(tmp_path, cfg, methods="sr", raise_on_error=False)
    assert record["status"] == "failed"


def test_finished_run_is_reused_and_a_different_config_refused(fakes, tmp_path, monkeypatch):
    counter = tmp_path / "count.txt"
    monkeypatch.setenv("ADUE_FAKE_COUNTER", str(counter))
    _run(tmp_path, methods="sr")
    again = _run(tmp_path, methods="sr,entropy")
    assert again["finetune_reused"] is True
    assert counter.read_text().splitlines() == ["minilm/sst2/seed1"]
    with pytest.raises(ValueError, match=r"different config \(differs in \['max_train'\]\)"):
        _run(tmp_path, _cfg(max_train=10), methods="sr")
    # the grid's mode: the old folder is moved aside (not deleted) and the cell retrained
    data = _run(tmp_path, _cfg(max_train=10), methods="sr", replace_stale_run=True)
    assert data["status"] == "complete" and data["finetune_reused"] is False
    assert data["config"]["max_train"] == 10
    aside = list((tmp_path / "runs" / "quick" / "minilm" / "sst2").glob("seed1.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "COMPLETE").is_file()
    assert "moved to" in data["warnings"][0]
    assert counter.read_text().splitlines() == ["minilm/sst2/seed1"] * 2


def test_search_fallback_recorded_when_validation_has_no_errors(monkeypatch, tmp_path):
    fake_pipeline.install(monkeypatch)
    import adue.runner as runner

    real = runner._extract

    def no_val_errors(run_dir, data_dir, progress):
        feats = real(run_dir, data_dir, progress)
        v = feats["validation"]
        feats["validation"] = type(v)(z=v.z, logits=v.logits, labels=v.predictions())
        return feats

    monkeypatch.setattr(runner, "_extract", no_val_errors)
    data = _run(tmp_path, methods="sr,adue")
    entry = data["methods"]["adue"]
    assert entry["status"] == "ok"
    assert isinstance(entry["search_fallback"], str) and entry["search_fallback"]
    assert entry["best_params"]
    assert any("search" in w.lower() for w in entry["warnings"])


def test_unknown_variant_names(fakes, tmp_path):
    with pytest.raises(ValueError, match="Valid variants: sr, entropy, md"):
        _run(tmp_path, methods=["sr", "nope"])


def test_cli_run(fakes, tmp_path, capsys):
    args = ["run", "--dataset", "sst2", "--backbone", "minilm", "--seed", "2", "--profile", "quick",
            "--results", str(tmp_path / "res"), "--runs-dir", str(tmp_path / "runs"),
            "--methods", "sr,md_l2", "--max-train", "500", "--no-progress"]
    assert main(args) == 0
    data = read_cell(tmp_path / "res" / "quick" / "minilm" / "sst2" / "seed2.json")
    assert data["config"]["max_train"] == 500
    assert list(data["methods"]) == ["sr", "md_l2"]
    assert (tmp_path / "runs" / "quick" / "minilm" / "sst2" / "seed2" / "COMPLETE").is_file()
    assert "md_l2" in capsys.readouterr().out
    bad = args[:-3] + ["--methods", "sr,bogus"]
    assert main(bad) == 2
    assert "Valid variants: sr, entropy" in capsys.readouterr().err
