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
from adue.variants import SN_ROWS, VARIANTS, get_variant, list_variants, resolve_variants

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import fake_pipeline  # noqa: E402

# A one-config AdUE "search" keeps the test fast; the variant table still asks for "paper".
TINY_SEARCH = {"lr": [1e-2], "epochs": [2], "alpha": [0.1], "beta": [0.1]}
METRICS = ("roc_auc", "pr_auc", "aurc")


@pytest.fixture
def fakes(monkeypatch):
    fake_pipeline.install(monkeypatch)
    return monkeypatch


def _pop_not_applicable_sn(methods: dict) -> None:
    """Every variant is there; the SN ones (single-Linear head) are not applicable: removed."""
    assert list(methods) == list_variants()
    for name in SN_ROWS:
        entry = methods.pop(name)
        assert entry["status"] == "not_applicable" and "single Linear layer" in entry["reason"]


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
        "adue_auto", "adue_auto_heldout",
        "md_sn", "rmd_sn", "rde_sn", "md_sn_l2", "rmd_sn_l2", "rde_sn_l2",
    ]
    assert list(SN_ROWS) == list_variants()[-6:]
    for name in SN_ROWS:  # the distance methods on the head's spectral-normalised feature map
        v = get_variant(name)
        assert v.method == name.split("_")[0] and v.needs_head
        assert v.params == {"l2_normalize": name.endswith("_l2"), "feature_map": "sn"}
    assert get_variant("adue_auto").params["loss"] == "auto"
    auto_held = get_variant("adue_auto_heldout")
    assert auto_held.params["loss"] == "auto" and auto_held.fit_on == "validation"
    assert auto_held.params["search_cv"] == 5
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
    import torch  # CPU results depend on the thread count (float reductions): it is recorded

    assert data["host"]["torch_threads"] == torch.get_num_threads() >= 1
    assert set(data["timings_s"]) == {"finetune", "extract", "methods", "total"}
    feats = {s: fake_pipeline.make_split(1, s, "sst2") for s in ("train", "validation", "test")}
    for s, f in feats.items():
        assert data["accuracy"][s] == pytest.approx(f.accuracy())
        assert data["n_errors"][s] == int(f.errors().sum()) > 0
    _pop_not_applicable_sn(data["methods"])
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
    assert data["methods"]["adue_auto_heldout"]["fit_split"] == "validation"
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
    assert set(curves["risk"]) == set(list_variants()) - set(SN_ROWS)
    for name in curves["risk"]:
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

    def no_val_errors(run_dir, data_dir, progress, device=None):
        feats = real(run_dir, data_dir, progress, device)
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


# ------------------------------------------------------------------ issue 8 regressions
def _user_folder(root: Path) -> Path:
    folder = root / "mydata"
    folder.mkdir(parents=True)
    rows = "".join(f"text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
    for split in ("train", "test"):
        (folder / f"{split}.csv").write_text("text,label\n" + rows, encoding="utf-8")
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("form", ["path", "name=path"])
def test_dataset_folder_is_never_written_into(fakes, tmp_path, form):
    folder = _user_folder(tmp_path / "data")
    before = _tree(tmp_path / "data")
    spec = str(folder) if form == "path" else f"reviews={folder}"
    name = "mydata" if form == "path" else "reviews"
    args = ["run", "--dataset", spec, "--backbone", "minilm", "--seed", "1", "--profile", "quick",
            "--results", str(tmp_path / "res"), "--runs-dir", str(tmp_path / "runs"),
            "--methods", "sr", "--no-progress"]
    assert main(args) == 0
    assert _tree(tmp_path / "data") == before  # nothing written inside the data folder
    data = read_cell(tmp_path / "res" / "quick" / "minilm" / name / "seed1.json")
    assert data["cell"]["dataset"] == name
    assert data["data"]["spec"] == spec and data["config"]["dataset"] == spec
    assert (tmp_path / "runs" / "quick" / "minilm" / name / "seed1" / "COMPLETE").is_file()
    assert sorted(p.name for p in (tmp_path / "res" / "quick" / "minilm").iterdir()) == [name]


def test_changed_data_is_refused_or_retrained(fakes, tmp_path, monkeypatch, capsys):
    counter = tmp_path / "count.txt"
    monkeypatch.setenv("ADUE_FAKE_COUNTER", str(counter))
    first = _run(tmp_path, methods="sr")
    path = cell_path(tmp_path / "results", "quick", "minilm", "sst2", 1)
    assert cell_is_finished(path, _cfg(), ["sr"], first["data"]["fingerprint"])
    monkeypatch.setenv("ADUE_FAKE_DATA_VERSION", "2")  # "edit test.csv"
    new_fp = fake_pipeline.fingerprint_of("sst2")
    assert not cell_is_finished(path, _cfg(), ["sr"], new_fp)
    with pytest.raises(ValueError, match=r"other data \(dataset fingerprint .* the data changed"
                                         r".*adue run --replace-run"):
        _run(tmp_path, methods="sr")
    assert counter.read_text().splitlines() == ["minilm/sst2/seed1"]  # not reused, not retrained
    args = ["run", "--dataset", "sst2", "--backbone", "minilm", "--seed", "1", "--profile", "quick",
            "--results", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"),
            "--methods", "sr", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other data" in err and "--replace-run" in err
    assert read_cell(path) == first  # the refusal left the previous cell as it was
    assert main(args + ["--replace-run"]) == 0
    data = read_cell(path)
    assert data["finetune_reused"] is False and data["data"]["fingerprint"] == new_fp
    assert counter.read_text().splitlines() == ["minilm/sst2/seed1"] * 2
    assert len(list((tmp_path / "runs" / "quick" / "minilm" / "sst2").glob("seed1.replaced-*"))) == 1


def test_bad_options_fail_before_any_work(fakes, tmp_path, monkeypatch, capsys):
    counter = tmp_path / "count.txt"
    monkeypatch.setenv("ADUE_FAKE_COUNTER", str(counter))
    with pytest.raises(ValueError, match=r"'search' parameter of AdUE .* \['lrr'\]"):
        _run(tmp_path, methods="sr,adue", adue_search={"lrr": [1e-3]})
    with pytest.raises(ValueError, match="'device'"):
        _run(tmp_path, _cfg(device="cuda:7"), methods="sr")
    base = ["run", "--dataset", "sst2", "--backbone", "minilm", "--seed", "1", "--profile", "quick",
            "--results", str(tmp_path / "res"), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main(base + ["--methods", "adue", "--adue-search", '{"lrr": [0.001]}']) == 2
    assert "lrr" in capsys.readouterr().err
    assert main(["demo", "--metric", "auroc", "--results", str(tmp_path / "res"),
                 "--runs-dir", str(tmp_path / "runs"), "--report", str(tmp_path / "r.md"),
                 "--plots", str(tmp_path / "plots")]) == 2
    assert "'metric'" in capsys.readouterr().err
    assert not counter.exists() and not (tmp_path / "runs").exists()
    assert not list(tmp_path.rglob("*.json"))


def test_unwritable_outputs_fail_first_in_one_line(fakes, tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    counter = tmp_path / "count.txt"
    monkeypatch.setenv("ADUE_FAKE_COUNTER", str(counter))
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    base = ["run", "--dataset", "sst2", "--backbone", "minilm", "--seed", "1", "--profile", "quick",
            "--runs-dir", str(tmp_path / "runs"), "--methods", "sr", "--no-progress"]
    assert main(base + ["--results", str(tmp_path / "afile" / "res")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a folder" in err and "afile is a file" in err
    assert main(["report", str(FIXTURE_CELLS), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["report", str(FIXTURE_CELLS), "--plots", str(tmp_path / "afile")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert not counter.exists()

    def read_only(*a, **k):  # root ignores permission bits: simulate a read-only file system
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(base + ["--results", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err
    assert err == f"adue: error: Cannot write to the results folder {tmp_path / 'ro'}: Read-only file system\n"
    assert not counter.exists()
    monkeypatch.undo()
    fake_pipeline.install(monkeypatch)

    import adue.runner as runner

    def disk_full(path, obj, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner, "atomic_write_json", disk_full)
    assert main(base + ["--results", str(tmp_path / "full")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err


FIXTURE_CELLS = Path(__file__).parent / "fixtures" / "cells"


def test_not_applicable_variant_is_recorded_not_run(fakes, tmp_path, monkeypatch):
    from dataclasses import dataclass

    import adue.variants as variants
    from adue.methods import method_class
    from adue.report import build_report, load_results

    @dataclass(frozen=True)
    class TwoLayerOnly(variants.Variant):
        @property
        def needs_head(self):  # it looks at the head, so the runner loads it
            return True

        def unavailable_reason(self, head):
            layers = sum(1 for m in head.modules() if type(m).__name__ == "Linear")
            return None if layers >= 2 else f"needs a two-layer head (this one has {layers})"

    calls = []
    monkeypatch.setattr(method_class("md"), "fit", lambda self, *a: calls.append(a))
    monkeypatch.setitem(variants.VARIANTS, "md_sn", TwoLayerOnly("md_sn", "md", label="MD SN"))
    data = _run(tmp_path, methods="sr,md_sn")
    entry = data["methods"]["md_sn"]
    assert entry == {"status": "not_applicable", "method": "md", "fit_split": "train",
                     "reason": "needs a two-layer head (this one has 1)"}
    assert calls == [] and "md_sn" not in data["curves"]["risk"]
    assert data["status"] == "complete"
    path = cell_path(tmp_path / "results", "quick", "minilm", "sst2", 1)
    assert cell_is_finished(path, _cfg(), ["sr", "md_sn"])
    text = build_report(load_results(tmp_path / "results"), metrics="roc_auc")
    assert "Variant `md_sn` not applicable: needs a two-layer head (this one has 1)" in text
    assert "failed" not in text


def test_device_is_resolved_and_passed_to_adue(fakes, tmp_path):
    from adue.device import resolve_device

    data = _run(tmp_path, methods="sr,adue")
    assert data["device"] == str(resolve_device("auto"))
    assert data["methods"]["adue"]["params"]["device"] == data["device"]
    data = _run(tmp_path, _cfg(device="cpu"), methods="adue")  # device alone: same run reused
    assert data["finetune_reused"] is True and data["methods"]["adue"]["params"]["device"] == "cpu"


def test_schema_1_cells_still_read(tmp_path):
    old = json.loads((FIXTURE_CELLS / "cpu" / "minilm" / "sst2" / "seed1.json").read_text())
    assert old["schema_version"] == 1
    data = read_cell(FIXTURE_CELLS / "cpu" / "minilm" / "sst2" / "seed1.json")
    assert data["schema_version"] == SCHEMA_VERSION == 2 and data["upgraded_from"] == 1
    first_ok = next(e for e in old["methods"].values() if e["status"] == "ok")
    assert data["classifier"] == {"ece": first_ok["metrics"]["ece"],
                                  "brier": first_ok["metrics"]["brier"]}
    assert check_cell({"schema_version": 3, "cell": {}})[1].startswith("schema_version 3")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 2}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a usable adue cell result: no 'cell'"):
        read_cell(bad)


def test_verbosity_levels():
    import logging

    for argv, level in ((["methods"], logging.WARNING), (["-v", "methods"], logging.INFO),
                        (["-vv", "methods"], logging.DEBUG), (["-vvv", "methods"], logging.DEBUG)):
        assert main(argv) == 0
        assert logging.getLogger("adue").level == level, argv


def test_missing_subcommand_module_fails_loudly(monkeypatch):
    import adue.cli as cli

    monkeypatch.setattr(cli, "_SUBCOMMANDS", cli._SUBCOMMANDS + ("adue.cli.not_there_cmd",))
    with pytest.raises(ModuleNotFoundError, match="not_there_cmd"):
        cli.build_parser()


def test_demo_prints_a_short_summary_and_writes_the_report(fakes, tmp_path, capsys):
    import adue.runner as runner

    real = runner.run_cell
    fakes.setattr(runner, "run_cell", lambda *a, **k: real(*a, **dict(k, methods="sr,md_l2,adue",
                                                                         adue_search=TINY_SEARCH)))
    report, plots = tmp_path / "out" / "report.md", tmp_path / "out" / "plots"
    assert main(["demo", "--results", str(tmp_path / "res"), "--runs-dir", str(tmp_path / "runs"),
                 "--report", str(report), "--plots", str(plots), "--no-progress"]) == 0
    out = capsys.readouterr().out
    data = read_cell(cell_path(tmp_path / "res", "quick", "minilm", "sst2", 1))
    m = data["methods"]
    lines = out.splitlines()
    assert len(lines) <= 12, out  # not the whole report
    assert lines[0].endswith(f"test accuracy {100 * data['accuracy']['test']:.1f}")
    assert lines[1].split() == ["variant", "ROC-AUC", "AURC"]
    sr = m["sr"]["metrics"]
    assert ["sr", f"{100 * sr['roc_auc']:.1f}", f"{100 * sr['aurc']:.1f}"] in [x.split() for x in lines]
    d_roc = 100 * (m["adue"]["metrics"]["roc_auc"] - sr["roc_auc"])
    d_aurc = 100 * (m["adue"]["metrics"]["aurc"] - sr["aurc"])
    assert f"AdUE vs SR: ROC-AUC {d_roc:+.1f}, AURC {d_aurc:+.1f}" in out
    assert f"full report: {report}" in out and f"plots (2): {plots}" in out
    assert report.read_text(encoding="utf-8").startswith("# adue results: `res`")
    assert sorted(p.name for p in plots.iterdir()) == [
        "reliability_quick_minilm_sst2.png", "risk_coverage_quick_minilm_sst2.png"]


# ------------------------------------------------------------------ the real pipeline
def _softmax_response(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return 1.0 - (p / p.sum(axis=1, keepdims=True)).max(axis=1)


def _check_real_cell(data: dict, rows: dict) -> None:
    """Every variant ran on real features; SR equals scikit-learn on the extracted logits."""
    from adue.extract import extract

    assert data["status"] == "complete" and data["n_rows"] == rows
    assert data["accuracy"]["test"] > 0.6  # it learned (chance: 0.5)
    _pop_not_applicable_sn(data["methods"])
    for name, entry in data["methods"].items():
        assert entry["status"] == "ok", (name, entry.get("error"))
        assert 0.0 <= entry["metrics"]["roc_auc"] <= 1.0, name
    assert len(data["data"]["fingerprint"]) == 64
    test = extract(data["run_dir"], splits=("test",))["test"]  # the features file written
    errors = (test.logits.argmax(axis=1) != test.labels).astype(int)
    assert data["n_errors"]["test"] == int(errors.sum()) > 0
    assert data["methods"]["sr"]["metrics"]["roc_auc"] == pytest.approx(
        roc_auc_score(errors, _softmax_response(test.logits)), abs=1e-9)


def test_real_run_cell_on_minilm(require_minilm, tmp_path, tmp_path_factory):
    """Not faked: the session's MiniLM run on 400 SST-2 rows (trained once, shared with
    test_finetune / test_extract) copied into a runs folder, then run_cell: real extraction,
    every variant, the cell JSON."""
    import shutil

    from _pipeline import data_dir, minilm_config, minilm_run

    cfg = minilm_config()
    run_dir = tmp_path / "runs" / "quick" / "minilm" / "sst2" / "seed1"
    shutil.copytree(minilm_run(tmp_path_factory), run_dir)
    record = run_cell(cfg, tmp_path / "res", runs_dir=tmp_path / "runs", data_dir=data_dir(),
                      adue_search=TINY_SEARCH, progress=False)
    data = read_cell(cell_path(tmp_path / "res", "quick", "minilm", "sst2", 1))
    assert data == json.loads(json.dumps(record)) and data["finetune_reused"] is True
    _check_real_cell(data, {"train": 400, "validation": 200, "test": 200})


@pytest.mark.slow
def test_real_run_cell_fine_tunes_minilm(require_minilm, tmp_path):
    """Not faked, fine-tuning included: MiniLM on 320 SST-2 rows (98 s of CPU on 2 threads)."""
    from _pipeline import data_dir, minilm_config

    cfg = minilm_config(max_train=320, max_val=120, max_test=150, max_length=64, device="cpu")
    record = run_cell(cfg, tmp_path / "res", runs_dir=tmp_path / "runs", data_dir=data_dir(),
                      adue_search=TINY_SEARCH, progress=False)
    assert record["finetune_reused"] is False
    _check_real_cell(record, {"train": 320, "validation": 120, "test": 150})
    again = run_cell(cfg, tmp_path / "res", runs_dir=tmp_path / "runs", data_dir=data_dir(),
                     methods="sr", progress=False)
    assert again["finetune_reused"] is True
    assert again["methods"]["sr"]["metrics"] == record["methods"]["sr"]["metrics"]


def test_needs_minilm_fails_never_skips(monkeypatch):
    import _pipeline

    monkeypatch.setattr(_pipeline, "minilm_installed", lambda: False)
    with pytest.raises(pytest.fail.Exception, match="MiniLM backbone not installed.*make install"):
        _pipeline.check_minilm()


def test_run_passes_column_options_into_the_config(fakes, tmp_path):
    args = ["run", "--dataset", "sst2", "--backbone", "minilm", "--seed", "1", "--profile", "quick",
            "--results", str(tmp_path / "res"), "--runs-dir", str(tmp_path / "runs"),
            "--methods", "sr", "--no-progress", "--text-column", "sentence", "--label-column", "category"]
    assert main(args) == 0
    config = read_cell(tmp_path / "res" / "quick" / "minilm" / "sst2" / "seed1.json")["config"]
    assert (config["text_column"], config["label_column"]) == ("sentence", "category")


def test_summary_table_groups_not_applicable_variants_by_reason():
    from adue.cli.run_cmd import summary_table

    ok = {"status": "ok", "metrics": {"roc_auc": 0.75, "aurc": 0.125}}
    na = {"status": "not_applicable", "reason": "single Linear head"}
    record = {"cell": {"backbone": "minilm", "dataset": "sst2", "seed": 1, "profile": "quick"},
              "accuracy": {"test": 0.5}, "methods": {"sr": ok, "md_sn": na, "rmd_sn": na}}
    lines = summary_table(record, metrics=("roc_auc", "aurc")).splitlines()
    assert lines[0] == "minilm / sst2 / seed 1 (quick): test accuracy 50.0"
    assert lines[2].split() == ["sr", "75.0", "12.5"]
    assert lines[3] == "not applicable (md_sn, rmd_sn): single Linear head"
    assert len(lines) == 4
