"""adue.models: loading a user's classifier (checkpoint, PEFT adapter, adue run, hub id), its
file reference, and label matching -- on tiny random models saved into tmp_path, and on the
real MiniLM. Predictions are checked against plain transformers / peft run text by text."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_VOCAB
from test_architectures import _model

from adue.inference import extract_features
from adue.models import (
    LoadedClassifier,
    ModelFileChangedError,
    load_classifier,
    match_labels,
    verify_reference,
)

NAMES = ["negative", "neutral", "positive"]
TOL = 1e-5
RNG = np.random.default_rng(0)
TEXTS = [" ".join(f"w{i}" for i in RNG.integers(4, TINY_VOCAB, size=n)) for n in
         (1, 7, 3, 12, 5, 9, 2, 4)]


def _tiny_tokenizer():
    """A word-level fast tokenizer over the tiny vocabulary: [PAD]=0, [CLS]=1, [SEP]=2,
    [UNK]=3, then w4..w95 (ids 4..95)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}
    vocab.update({f"w{i}": i for i in range(4, TINY_VOCAB)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", eos_token="[SEP]", model_max_length=64,
    )


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file below ``folder``: to show nothing was written there."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _save_checkpoint(arch: str, folder: Path, names=NAMES) -> Path:
    model = _model(arch, len(names))
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
    model.save_pretrained(folder)
    _tiny_tokenizer().save_pretrained(folder)
    return folder


def _plain_logits(model, tokenizer, texts) -> np.ndarray:
    """Logits of each text on its own (no padding), as plain transformers / peft give them."""
    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt")
            rows.append(model(**enc).logits[0].float().numpy())
    return np.stack(rows)


def _ours(loaded: LoadedClassifier, texts=TEXTS) -> np.ndarray:
    _, logits = extract_features(loaded.model, loaded.tokenizer, texts,
                                 max_length=loaded.max_length, batch_size=3)
    return logits


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "deberta-v2", "gpt2", "llama"])
def test_checkpoint_folder_predicts_as_transformers(arch, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = _save_checkpoint(arch, tmp_path / "ckpt")
    before = _snapshot(folder)
    loaded = load_classifier(folder, device="cpu")
    assert _snapshot(folder) == before  # nothing written into the user's folder
    assert loaded.label_names == NAMES and loaded.num_labels == 3
    assert not loaded.model.training and loaded.max_length == 64
    ref = loaded.reference
    assert ref["kind"] == "checkpoint" and ref["path"] == str(folder.resolve())
    assert ref["base"] is None and ref["revision"] is None
    assert ref["files"]["model.safetensors"] == _sha(folder / "model.safetensors")
    assert {"config.json", "tokenizer.json"} <= set(ref["files"])
    json.dumps(ref)  # JSON-able

    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    want = _plain_logits(plain, AutoTokenizer.from_pretrained(folder), TEXTS)
    got = _ours(loaded)
    assert np.abs(got - want).max() < TOL
    assert (got.argmax(1) == want.argmax(1)).all()


# ------------------------------------------------------------------------------ adapters
def _save_base(arch: str, folder: Path) -> Path:
    """The 'pretrained' backbone: a tiny model saved without a trained head + tokenizer."""
    model = _model(arch, 3, seed=1)
    model.base_model.save_pretrained(folder)
    _tiny_tokenizer().save_pretrained(folder)
    return folder


def _save_adapter(base_folder: Path, folder: Path, arch: str, *, task_type="SEQ_CLS") -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from adue.architectures import lora_target_modules

    torch.manual_seed(2)
    kwargs = {} if task_type is None else {"task_type": task_type}
    model = AutoModelForSequenceClassification.from_pretrained(base_folder, num_labels=3)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=lora_target_modules(model), **kwargs)
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():  # 'training': LoRA and the head move away from their init
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(0.3 * torch.randn_like(p))
    peft_model.save_pretrained(folder)
    return folder


def _plain_peft_logits(base_folder: Path, adapter: Path, texts=TEXTS) -> np.ndarray:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = AutoModelForSequenceClassification.from_pretrained(base_folder, num_labels=3)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()  # not merged
    return _plain_logits(model, AutoTokenizer.from_pretrained(base_folder), texts)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_adapter_folder_with_its_recorded_base(arch, tmp_path):
    base = _save_base(arch, tmp_path / "base")
    adapter = _save_adapter(base, tmp_path / "adapter", arch)
    assert json.loads((adapter / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == str(base)
    before = _snapshot(adapter), _snapshot(base)
    loaded = load_classifier(adapter, device="cpu")
    assert (_snapshot(adapter), _snapshot(base)) == before
    ref = loaded.reference
    assert ref["kind"] == "adapter" and ref["path"] == str(adapter.resolve())
    assert ref["files"]["adapter_model.safetensors"] == _sha(adapter / "adapter_model.safetensors")
    assert ref["base"]["kind"] == "checkpoint" and ref["base"]["path"] == str(base.resolve())
    assert ref["base"]["files"]["model.safetensors"] == _sha(base / "model.safetensors")
    assert loaded.label_names == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert not hasattr(loaded.model, "peft_config")  # merged into a plain transformers model
    want = _plain_peft_logits(base, adapter)
    got = _ours(loaded)
    assert np.abs(got - want).max() < 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()
    verify_reference(ref)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_adapter_base_not_found_then_given(tmp_path):
    base = _save_base("bert", tmp_path / "base")
    adapter = _save_adapter(base, tmp_path / "adapter", "bert")
    moved = tmp_path / "moved_base"
    shutil.move(base, moved)
    with pytest.raises(FileNotFoundError, match=r"base model .*cannot be found.*--base"):
        load_classifier(adapter, device="cpu")
    loaded = load_classifier(adapter, base=moved, device="cpu")
    assert loaded.reference["base"]["path"] == str(moved.resolve())
    want = _plain_peft_logits(moved, adapter)
    assert np.abs(_ours(loaded) - want).max() < 1e-4

    cfg_path = adapter / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = None
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not name its base model"):
        load_classifier(adapter, device="cpu")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_adapter_without_head_is_refused(tmp_path):
    base = _save_base("bert", tmp_path / "base")
    adapter = _save_adapter(base, tmp_path / "adapter", "bert", task_type=None)
    with pytest.raises(ValueError, match="holds no trained classification head.*SEQ_CLS"):
        load_classifier(adapter, device="cpu")


# ------------------------------------------------------------------------------ run folder
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_adue_run_folder(tmp_path):
    from adue._atomic import atomic_write_json
    from adue.config import RunConfig
    from adue.extract import load_trained_model
    from adue.training import runfolder as rf

    base = _save_base("bert", tmp_path / "base")
    run = tmp_path / "run"
    run.mkdir()
    _save_adapter(base, run / rf.ADAPTER, "bert")
    RunConfig(dataset="sst2", backbone=str(base), seed=0, max_length=40).to_json(run / rf.CONFIG)
    atomic_write_json(run / rf.DATASET, {"class_names": NAMES, "num_labels": 3})
    atomic_write_json(run / rf.COMPLETE, {"finished": "now"})
    loaded = load_classifier(run, device="cpu")
    ref = loaded.reference
    assert ref["kind"] == "run" and loaded.label_names == NAMES and loaded.max_length == 40
    assert set(ref["files"]) == {"adapter/adapter_model.safetensors",
                                 "adapter/adapter_config.json", "config.json", "dataset.json"}
    assert ref["base"]["path"] == str(base.resolve())
    want = _plain_peft_logits(base, run / rf.ADAPTER)
    got = _ours(loaded)
    assert np.abs(got - want).max() < 1e-4
    # the same model as the extraction path builds
    model, tokenizer = load_trained_model(run, device="cpu")
    assert np.abs(_plain_logits(model, tokenizer, TEXTS) - want).max() < 1e-4

    (run / rf.COMPLETE).unlink()
    with pytest.raises(ValueError, match="is not finished"):
        load_classifier(run, device="cpu")


# ------------------------------------------------------------------------------ hub ids
def test_hub_id_goes_to_the_hub_with_the_right_arguments(tmp_path, monkeypatch):
    import huggingface_hub
    import transformers

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = _save_checkpoint("bert", tmp_path / "hub" / "snapshots" / commit)
    calls: list[tuple] = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(snapshot)

    seen: list[dict] = []
    real = transformers.AutoModelForSequenceClassification.from_pretrained

    def spy(path, **kwargs):
        seen.append({"path": path, **kwargs})
        return real(path, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", spy)
    loaded = load_classifier("someorg/tiny-sentiment", revision="v1.0", device="cpu")
    (repo, kwargs), = calls
    assert repo == "someorg/tiny-sentiment" and kwargs["revision"] == "v1.0"
    assert "*.safetensors" in kwargs["allow_patterns"] and "*.py" not in kwargs["allow_patterns"]
    assert "*.bin" not in kwargs["allow_patterns"]  # no pickled weights from the hub
    assert seen[0]["path"] == str(snapshot) and seen[0]["trust_remote_code"] is False
    ref = loaded.reference
    assert ref["kind"] == "hub" and ref["id"] == "someorg/tiny-sentiment"
    assert ref["revision"] == commit and ref["path"] is None
    assert ref["cache_path"] == str(snapshot)
    assert ref["files"]["model.safetensors"] == _sha(snapshot / "model.safetensors")
    verify_reference(ref)
    assert loaded.label_names == NAMES

    load_classifier("someorg/tiny-sentiment", device="cpu", trust_remote_code=True)
    assert "*.py" in calls[-1][1]["allow_patterns"] and calls[-1][1]["revision"] is None
    assert seen[-1]["trust_remote_code"] is True


def test_hub_failure_is_one_clear_error(monkeypatch):
    import huggingface_hub

    def offline(repo_id, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ValueError, match=r"Could not get the hub model 'org/model' \(revision "
                                         r"main\).*internet access"):
        load_classifier("org/model", device="cpu")


# ------------------------------------------------------------------------------ references
def test_verify_reference_names_a_changed_or_missing_file(tmp_path):
    folder = _save_checkpoint("bert", tmp_path / "ckpt")
    ref = load_classifier(folder, device="cpu").reference
    verify_reference(ref)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    stat = weights.stat()
    data[-1] ^= 0xFF  # same size, mtime restored: still caught
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ModelFileChangedError, match=r"model\.safetensors changed since"):
        verify_reference(ref)
    weights.unlink()
    with pytest.raises(ModelFileChangedError, match=r"model\.safetensors recorded .* missing"):
        verify_reference(ref)
    with pytest.raises(ValueError, match="'reference' parameter of verify_reference"):
        verify_reference({"kind": "checkpoint"})


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_verify_reference_checks_the_base_of_an_adapter(tmp_path):
    base = _save_base("bert", tmp_path / "base")
    adapter = _save_adapter(base, tmp_path / "adapter", "bert")
    ref = load_classifier(adapter, device="cpu").reference
    tok = base / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"w5"', '"w5x"'))
    with pytest.raises(ModelFileChangedError, match=r"base/tokenizer\.json changed"):
        verify_reference(ref)


# ----------------------------------------------------------------------------- bad input
def test_bad_model_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="is empty"):
        load_classifier(empty, device="cpu")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"is not a model.*config\.json.*notes\.txt"):
        load_classifier(other, device="cpu")
    with pytest.raises(ValueError, match="is a file"):
        load_classifier(other / "notes.txt", device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_classifier(tmp_path / "nope", device="cpu")
    with pytest.raises(ValueError, match="'model_ref' parameter of load_classifier"):
        load_classifier("", device="cpu")
    with pytest.raises(ValueError, match="'trust_remote_code' parameter of load_classifier"):
        load_classifier(other, trust_remote_code="yes")
    ckpt = _save_checkpoint("bert", tmp_path / "ckpt")
    with pytest.raises(ValueError, match="'revision' parameter of load_classifier applies to hub"):
        load_classifier(ckpt, revision="main", device="cpu")
    with pytest.raises(ValueError, match="'base' parameter of load_classifier applies to PEFT"):
        load_classifier(ckpt, base="minilm", device="cpu")
    with pytest.raises(ValueError, match="'device' parameter"):
        load_classifier(ckpt, device="tpu")


def test_causal_lm_and_headless_checkpoints_are_refused(tmp_path):
    from transformers import AutoModelForCausalLM

    llama = _model("llama", 3)
    lm = AutoModelForCausalLM.from_config(llama.config)
    lm.save_pretrained(tmp_path / "lm")
    _tiny_tokenizer().save_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match=r"causal language model \(LlamaForCausalLM checkpoint\)"
                                         r".*ForSequenceClassification.*--base"):
        load_classifier(tmp_path / "lm", device="cpu")
    base = _save_base("bert", tmp_path / "bert")
    with pytest.raises(ValueError, match=r"is a BertModel checkpoint without a trained "
                                         r"classification head.*classifier\.bias"):
        load_classifier(base, device="cpu")
    (base / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no weights"):
        load_classifier(base, device="cpu")


def test_checkpoint_without_tokenizer(tmp_path):
    folder = tmp_path / "ckpt"
    _model("bert", 3).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"no tokenizer files.*tokenizer\.save_pretrained"):
        load_classifier(folder, device="cpu")


# --------------------------------------------------------------------------------- labels
def test_match_labels():
    assert match_labels(NAMES, ["positive", "negative", "neutral"]) == [2, 0, 1]
    assert match_labels(NAMES, NAMES) == [0, 1, 2]
    assert match_labels(["LABEL_0", "LABEL_1"], ["neg", "pos"]) == [0, 1]  # by integer
    assert match_labels(["neg", "pos"], ["0", "1"]) == [0, 1]
    with pytest.raises(ValueError, match=r"model has 3 classes \['negative', 'neutral', "
                                         r"'positive'\] but the data has 2 \['neg', 'pos'\]"):
        match_labels(NAMES, ["neg", "pos"])
    with pytest.raises(ValueError, match=r"label\(s\) \['sports'\] are not labels of the model"
                                         r".*Model labels: .*data labels: "):
        match_labels(NAMES, ["negative", "sports", "positive"])
    with pytest.raises(ValueError, match="differ only in case: 'Positive'~'positive'"):
        match_labels(NAMES, ["negative", "neutral", "Positive"])
    with pytest.raises(ValueError, match="repeat"):
        match_labels(["a", "a", "b"], ["a", "b", "c"])


# ---------------------------------------------------------------------------- real MiniLM
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_real_minilm_checkpoint_and_adapter_on_the_preset(tmp_path, require_minilm):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from adue.backbones import PRESETS, load_backbone

    texts = ["a wonderful, moving film", "dull and far too long", "it was fine I guess",
             "the worst thing I have seen this year", "brilliant acting"]
    torch.manual_seed(0)
    model, tokenizer = load_backbone("minilm", 2)
    peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4,
                                                  target_modules=["query", "value"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(0.2 * torch.randn_like(p))
    peft_model.save_pretrained(tmp_path / "adapter")
    loaded = load_classifier(tmp_path / "adapter", base="minilm", device="cpu")
    base_ref = loaded.reference["base"]
    assert base_ref["kind"] == "preset" and base_ref["name"] == "minilm"
    assert base_ref["files"]["model.safetensors"] == PRESETS["minilm"].sha256
    want = _plain_logits(peft_model.eval(), tokenizer, texts)
    got = _ours(loaded, texts)
    assert np.abs(got - want).max() < 1e-4 and (got.argmax(1) == want.argmax(1)).all()

    merged = peft_model.merge_and_unload()
    merged.config.id2label = {0: "neg", 1: "pos"}
    merged.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    loaded = load_classifier(tmp_path / "ckpt", device="cpu")
    assert loaded.label_names == ["neg", "pos"] and loaded.max_length == 512
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt").eval()
    want = _plain_logits(plain, AutoTokenizer.from_pretrained(tmp_path / "ckpt"), texts)
    got = _ours(loaded, texts)
    assert np.abs(got - want).max() < TOL and (got.argmax(1) == want.argmax(1)).all()
