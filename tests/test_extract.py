"""Feature extraction: logit parity with the model's own forward, z as the head's input,
accuracy reproduced, splits skipped when written, a tiny decoder through finetune + extract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _pipeline import data_dir, minilm_run, needs_minilm, tiny_decoder_folder

from adue.config import resolve_config
from adue.extract import extract, load_head, load_trained_model
from adue.features import features_path, load_features
from adue.inference.tokenize import encode_texts, pad_batch
from adue.training import finetune, read_run_config
from adue.training import runfolder as rf


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return minilm_run(tmp_path_factory)


@pytest.fixture(scope="module")
def feats(run_dir):
    return extract(run_dir, data_dir=data_dir(), progress=False)


def _rowwise_logits(model, tokenizer, texts, max_len):
    """The model's own forward pass, one unpadded row at a time."""
    out = []
    with torch.no_grad():
        for ids in encode_texts(tokenizer, texts, max_len):
            b = pad_batch([ids], tokenizer.pad_token_id)
            out.append(model(**b).logits[0].float().numpy())
    return np.stack(out)


@needs_minilm
def test_features_written_and_accuracy_reproduced(run_dir, feats):
    from adue.data import load_dataset

    assert set(feats) == {"train", "validation", "test"}
    sizes = {"train": 400, "validation": 200, "test": 200}
    for split, f in feats.items():
        assert features_path(run_dir, split).is_file()
        assert f.n == sizes[split] and f.dim == 384 and f.num_classes == 2
    ds = load_dataset("sst2", data_dir(), max_train=400, max_val=200, max_test=200)
    for split, f in feats.items():
        assert f.labels.tolist() == list(ds[split]["label"])  # original row order
    log = json.loads((run_dir / rf.TRAIN_LOG).read_text())
    # the validation accuracy measured during training, reproduced from the features
    # (the same rows right: equal counts, compared up to float rounding of the two means)
    assert feats["validation"].accuracy() == pytest.approx(log["best_val_accuracy"], abs=1e-12)
    # the model learned: test accuracy well above chance (0.5) on 200 rows
    assert feats["test"].accuracy() >= 0.68
    back = load_features(run_dir, "test")
    assert np.array_equal(back.z, feats["test"].z) and np.array_equal(back.logits, feats["test"].logits)


@needs_minilm
def test_extracted_logits_equal_the_models_own(run_dir, feats):
    from peft import PeftModel

    from adue.backbones import load_backbone
    from adue.data import load_dataset

    ds = load_dataset("sst2", data_dir(), max_train=400, max_val=200, max_test=200)
    texts = list(ds["test"]["text"])[:64]
    model, tok = load_trained_model(run_dir, device="cpu")
    own = _rowwise_logits(model, tok, texts, 128)
    assert np.abs(own - feats["test"].logits[:64]).max() < 1e-4
    # and the un-merged LoRA model (what was trained) gives the same logits
    base, tok2 = load_backbone("minilm", 2)
    peft_model = PeftModel.from_pretrained(base, str(run_dir / rf.ADAPTER)).eval()
    own_peft = _rowwise_logits(peft_model, tok2, texts, 128)
    assert np.abs(own_peft - feats["test"].logits[:64]).max() < 1e-4


@needs_minilm
def test_head_maps_z_to_logits(run_dir, feats):
    head = load_head(run_dir)
    assert not head.training and head.is_linear and head.in_features == 384
    with torch.no_grad():
        for f in feats.values():
            got = head(torch.from_numpy(f.z)).numpy()
            assert np.abs(got - f.logits).max() < 1e-4


@needs_minilm
def test_extract_skips_written_splits(run_dir, feats):
    path = features_path(run_dir, "test")
    stamp = path.stat().st_mtime_ns
    again = extract(run_dir, splits="test", data_dir=data_dir(), progress=False)
    assert list(again) == ["test"] and path.stat().st_mtime_ns == stamp
    assert np.array_equal(again["test"].logits, feats["test"].logits)


def test_extract_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        extract(tmp_path / "missing", progress=False)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    resolve_config("sst2", "minilm", 1, "quick").to_json(unfinished / rf.CONFIG)
    with pytest.raises(ValueError, match="not finished.*adue finetune"):
        extract(unfinished, progress=False)
    with pytest.raises(ValueError, match="'splits' parameter of extract"):
        extract(unfinished, splits=("dev",), progress=False)
    with pytest.raises(ValueError, match="'batch_size' parameter of extract"):
        extract(unfinished, batch_size=0, progress=False)
    with pytest.raises(FileNotFoundError, match="No trained head"):
        load_head(unfinished)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_decoder_finetune_and_extract(tmp_path, arch):
    """Decoder path: LoRA on q/k/v_proj, head 'score', z = hidden state at the last real token."""
    from adue.data import load_dataset

    dd = data_dir()
    ds = load_dataset("sst2", dd, max_train=64, max_val=32, max_test=32)
    folder = tiny_decoder_folder(tmp_path, arch, [t for s in ds for t in ds[s]["text"]])
    cfg = resolve_config(
        "sst2", str(folder), 1, "quick", max_train=64, max_val=32, max_test=32, epochs=1,
        batch_size=16, max_length=64, bf16=False,
    )
    run = finetune(cfg, tmp_path / "run", data_dir=dd, progress=False)
    adapter_cfg = json.loads((run / rf.ADAPTER / "adapter_config.json").read_text())
    assert sorted(adapter_cfg["target_modules"]) == ["k_proj", "q_proj", "v_proj"]
    assert "score" in adapter_cfg["modules_to_save"]
    feats = extract(run, data_dir=dd, progress=False)
    f = feats["test"]
    assert f.n == 32 and f.dim == 32

    model, tok = load_trained_model(run, device="cpu")
    assert tok.padding_side == "right" and tok.pad_token_id == model.config.pad_token_id
    texts = list(ds["test"]["text"])
    if cfg.strip_text:  # the cpu/quick recipes strip GLUE's trailing space for decoders
        texts = [t.strip() for t in texts]
    with torch.no_grad():
        for i, ids in enumerate(encode_texts(tok, texts, 64)[:8]):
            b = pad_batch([ids], tok.pad_token_id)
            out = model(**b)
            hidden = model.model(**b).last_hidden_state  # after the final norm
            # z is the final hidden state at the last token of the row
            assert np.abs(hidden[0, len(ids) - 1].numpy() - f.z[i]).max() < 1e-4
            assert np.abs(out.logits[0].numpy() - f.logits[i]).max() < 1e-4
    head = load_head(run)
    assert head.is_linear and head.out_proj.bias is None
    with torch.no_grad():
        assert np.abs(head(torch.from_numpy(f.z)).numpy() - f.logits).max() < 1e-5


def _copy_run(run_dir, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    return dst


@needs_minilm
def test_damaged_features_file_is_named_and_overwrite_rewrites_it(run_dir, feats, tmp_path, capsys):
    from safetensors.numpy import load_file, save_file

    from adue.cli import main

    run = _copy_run(run_dir, tmp_path)
    path = features_path(run, "test")
    good = path.read_bytes()
    data = load_file(str(path))
    data["z"][3, 5] = np.nan  # a NaN edited in
    save_file(data, str(path))
    for damaged in (None, good[: len(good) // 2]):  # NaN, then truncated
        if damaged is not None:
            path.write_bytes(damaged)
        with pytest.raises(ValueError) as err:
            extract(run, splits="test", progress=False)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg
        assert f"`adue extract --overwrite {run}` rewrites it" in msg
        # the command line prints the same single line
        assert main(["extract", str(run), "--splits", "test", "--no-progress"]) == 2
        assert capsys.readouterr().err.strip() == f"adue: error: {msg}"
    assert main(["extract", str(run), "--splits", "test", "--overwrite", "--no-progress",
                 "--data-dir", str(data_dir())]) == 0
    back = load_features(run, "test")
    assert np.abs(back.logits - feats["test"].logits).max() < 1e-5
    assert back.labels.tolist() == feats["test"].labels.tolist()


@needs_minilm
def test_extract_refuses_data_that_changed_since_training(run_dir, tmp_path):
    from adue.data import dataset_fingerprint
    from adue.training.inputs import load_run_splits

    info = json.loads((run_dir / rf.DATASET).read_text())
    cfg = read_run_config(run_dir)
    assert info["fingerprint"] == dataset_fingerprint(load_run_splits(cfg, data_dir()))
    run = _copy_run(run_dir, tmp_path)
    (run / rf.DATASET).write_text(json.dumps({**info, "fingerprint": "0" * 64}))
    with pytest.raises(ValueError, match="changed since the run .* was trained"):
        extract(run, splits="test", data_dir=data_dir(), progress=False, overwrite=True)


def test_run_data_found_by_the_one_resolver(monkeypatch):
    """No --data-dir, no ADUE_DATA_DIR: finetune and extract read ../shared/data found by
    walking up from the current folder (as adue run does), not the hub."""
    from pathlib import Path

    from adue.data import resolve_data_dir
    from adue.training.inputs import load_run_splits

    expected = data_dir()
    monkeypatch.delenv("ADUE_DATA_DIR", raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert resolve_data_dir(None).resolve() == Path(expected).resolve()
    cfg = resolve_config("sst2", "minilm", 1, "quick", max_train=20, max_val=10, max_test=10)
    ds = load_run_splits(cfg)
    assert {s: len(ds[s]) for s in ds} == {"train": 20, "validation": 10, "test": 10}
