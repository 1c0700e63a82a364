"""LoRA fine-tuning: a real MiniLM run on SST-2 rows, the run folder, resume, refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _pipeline import data_dir, minilm_config, minilm_run, needs_minilm
from safetensors.torch import load_file

from adue.config import RunConfig
from adue.training import finetune, is_complete, read_run_config
from adue.training import runfolder as rf
from adue.training.loop import _linear_schedule, resolve_bf16
from adue.training.sampling import shuffled_batches


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return minilm_run(tmp_path_factory)


# ----------------------------------------------------------------------------- cheap units
def test_linear_schedule_matches_formula():
    f = _linear_schedule(warmup=3, total=10)
    got = [f(s) for s in range(10)]
    # warm-up (s+1)/3 over 3 steps, then (10 - s) / 7 down to 1/7 at the last step
    want = [1 / 3, 2 / 3, 1.0] + [(10 - s) / 7 for s in range(3, 10)]
    assert np.allclose(got, want)
    assert _linear_schedule(0, 4)(0) == 1.0


def test_shuffled_batches():
    a = shuffled_batches(10, 4, seed=1, epoch=0)
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert [x.tolist() for x in a] == [x.tolist() for x in shuffled_batches(10, 4, seed=1, epoch=0)]
    assert np.concatenate(a).tolist() != np.concatenate(shuffled_batches(10, 4, seed=1, epoch=1)).tolist()


def test_length_grouped_batches_match_transformers_group_by_length():
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from adue.training.sampling import _generator, length_grouped_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=1000).tolist()
    bs = 16
    ours = length_grouped_batches(lengths, bs, seed=3, epoch=1)
    flat = np.concatenate(ours)
    assert sorted(flat.tolist()) == list(range(1000))  # every row once
    again = length_grouped_batches(lengths, bs, seed=3, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(ours, again, strict=True))
    other = length_grouped_batches(lengths, bs, seed=3, epoch=2)
    assert not np.array_equal(np.concatenate(other), flat)
    # transformers' grouping from the same permutation: the same batches (up to its one swap
    # that puts the longest row first, and up to the order of the batches, which we shuffle)
    ref = get_length_grouped_indices(lengths, bs, generator=_generator(3, 1))
    ref_batches = {tuple(ref[i : i + bs]) for i in range(0, len(ref), bs)}
    ours_set = {tuple(b.tolist()) for b in ours}
    assert len(ours_set - ref_batches) <= 2 and len(ours_set) == len(ref_batches)
    # far less padding than random batches of the same size
    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    rand = shuffled_batches(1000, bs, seed=3, epoch=1)
    assert padded(ours) < 0.75 * padded(rand)
    assert padded(ours) < 1.1 * sum(lengths)


def test_resolve_bf16(monkeypatch, caplog):
    from adue.training import loop

    cpu = torch.device("cpu")
    assert resolve_bf16(False, cpu) is False
    # "auto" follows the CPU's flags (AVX-512 BF16 or AMX in /proc/cpuinfo)
    flags = open("/proc/cpuinfo").read()
    assert resolve_bf16("auto", cpu) is ("avx512_bf16" in flags or "amx_bf16" in flags)
    # a CPU without native bf16 (e.g. AVX2 only): auto stays float32; an explicit True is
    # honoured with a warning that it is emulated and slow
    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="adue.training.loop"):
        assert resolve_bf16("auto", cpu) is False
        assert not caplog.records
        assert resolve_bf16(True, cpu) is True
    assert "without native bf16" in caplog.text
    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: True)
    caplog.clear()
    with caplog.at_level("WARNING", logger="adue.training.loop"):
        assert resolve_bf16("auto", cpu) is True and resolve_bf16(True, cpu) is True
    assert not caplog.records


def test_atomic_writes(tmp_path):
    from adue._atomic import atomic_write_json, atomic_write_text

    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"x": np.float32(0.5), "n": np.int64(3), "bad": float("nan"),
                             "arr": np.arange(2), "t": (1, 2), "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 0.5, "n": 3, "bad": None, "arr": [0, 1],
                                            "t": [1, 2], "p": str(tmp_path)}
    atomic_write_text(path, "old")

    class Boom:
        def __repr__(self):
            raise RuntimeError("fails mid-write")

    with pytest.raises(RuntimeError):
        atomic_write_json(path, {"k": Boom()})
    assert path.read_text() == "old"  # untouched
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary file left


def test_provenance(tmp_path):
    import subprocess
    from importlib import metadata
    from pathlib import Path

    from adue import provenance

    v = provenance.package_versions()
    assert v["torch"] == metadata.version("torch") and v["adue"] == metadata.version("adue")
    assert set(v) == {"python", *provenance.PACKAGES}
    here = Path(provenance.__file__).parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=here)
    assert provenance.git_commit().split("+")[0] == head.stdout.strip()

    # a package inside some other repository that does not track it: no commit claimed
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "README").write_text("x")
    git("add", "README")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    pkg = tmp_path / "venv" / "adue"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert provenance.commit_of(pkg) is None
    git("add", "venv")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "y")
    assert provenance.commit_of(pkg) is not None and "+dirty" not in provenance.commit_of(pkg)
    (pkg / "__init__.py").write_text("changed")
    assert provenance.commit_of(pkg).endswith("+dirty")


def test_prepare_run_dir_rules(tmp_path):
    cfg = RunConfig("sst2", "minilm", 1)
    fresh = tmp_path / "new"
    assert rf.prepare_run_dir(fresh, cfg, overwrite=False) is False and fresh.is_dir()
    # a non-empty folder that is not a run folder is refused, even with overwrite
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    for ow in (False, True):
        with pytest.raises(FileExistsError, match="not a run folder"):
            rf.prepare_run_dir(other, cfg, overwrite=ow)
    assert (other / "precious.txt").read_text() == "keep me"
    # an unfinished run with the same config resumes; another config is named
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    cfg.to_json(unfinished / rf.CONFIG)
    assert rf.prepare_run_dir(unfinished, cfg, overwrite=False) is True
    with pytest.raises(ValueError, match=r"epochs: 30 there vs 2 now, lr: 0\.0005 there vs 0\.001 now"):
        rf.prepare_run_dir(unfinished, cfg.replace(lr=1e-3, epochs=2), overwrite=False)
    # a finished run is refused without overwrite, emptied with it
    (unfinished / rf.COMPLETE).write_text("{}")
    assert is_complete(unfinished)
    with pytest.raises(FileExistsError, match="already holds a finished run.*overwrite"):
        rf.prepare_run_dir(unfinished, cfg, overwrite=False)
    assert rf.prepare_run_dir(unfinished, cfg, overwrite=True) is False
    assert list(unfinished.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        read_run_config(tmp_path / "nothing")


def test_finetune_rejects_non_config(tmp_path):
    with pytest.raises(TypeError, match="must be a RunConfig"):
        finetune({"dataset": "sst2"}, tmp_path / "x")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- real run
@needs_minilm
def test_minilm_run_folder_and_learning(run_dir):
    cfg = read_run_config(run_dir)
    assert cfg == minilm_config()
    assert is_complete(run_dir)
    for name in (rf.CONFIG, rf.DATASET, rf.TRAIN_LOG, rf.VERSIONS, rf.HEAD):
        assert (run_dir / name).is_file(), name
    assert (run_dir / rf.ADAPTER / "adapter_model.safetensors").is_file()
    assert not (run_dir / rf.CHECKPOINT).exists()  # removed once finished
    adapter_cfg = json.loads((run_dir / rf.ADAPTER / "adapter_config.json").read_text())
    assert sorted(adapter_cfg["target_modules"]) == ["key", "query", "value"]
    assert adapter_cfg["r"] == 8 and adapter_cfg["lora_alpha"] == 16
    assert "classifier" in adapter_cfg["modules_to_save"]
    weights = load_file(str(run_dir / rf.ADAPTER / "adapter_model.safetensors"))
    assert any("lora_B" in k for k in weights) and any("classifier" in k for k in weights)
    # LoRA B starts at zero; training moved it
    assert max(float(v.abs().max()) for k, v in weights.items() if "lora_B" in k) > 0

    log = json.loads((run_dir / rf.TRAIN_LOG).read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert log["num_train"] == 400 and log["num_val"] == 200
    assert log["steps_per_epoch"] == 25 and log["total_steps"] == 50
    assert log["warmup_steps"] == math.ceil(0.1 * 50)
    accs = [e["val_accuracy"] for e in log["epochs"]]
    assert log["best_val_accuracy"] == max(accs)
    assert log["best_epoch"] == 1 + accs.index(max(accs))
    # lr decays linearly to 0 by the last step; the head group uses head_lr
    assert log["epochs"][-1]["lr_end"] == [0.0] * len(log["epochs"][-1]["lr_end"])
    # learned: well above chance (0.5) on validation; the train loss fell below log 2
    assert log["best_val_accuracy"] >= 0.70
    assert log["epochs"][-1]["train_loss"] < math.log(2) - 0.05
    versions = json.loads((run_dir / rf.VERSIONS).read_text())
    assert versions["torch"] == torch.__version__ and "peft" in versions
    # the best epoch's validation pass is stored as the validation features (no second pass)
    from adue.features import load_features

    val = load_features(run_dir, "validation")
    assert val.n == 200
    # Both are k/200 for k correct rows, one of them averaged in float32 (error ~1e-7, e.g.
    # 0.8049999 for 0.805): 1e-6 is far below the 1/200 step, so the count must still match.
    correct = int((val.errors() == 0).sum())
    assert log["best_val_accuracy"] == pytest.approx(correct / val.n, abs=1e-6)
    assert val.accuracy() == pytest.approx(correct / val.n, abs=1e-6)
    dataset = json.loads((run_dir / rf.DATASET).read_text())
    assert dataset["class_names"] == ["negative", "positive"]
    assert dataset["sizes"] == {"train": 400, "validation": 200, "test": 200}


@needs_minilm
def test_finished_run_is_not_overwritten(run_dir):
    before = (run_dir / rf.TRAIN_LOG).read_text()
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        finetune(read_run_config(run_dir), run_dir, data_dir=data_dir(), progress=False)
    assert (run_dir / rf.TRAIN_LOG).read_text() == before


class _Interrupt(RuntimeError):
    pass


@needs_minilm
def test_resume_after_interruption_matches_uninterrupted_run(run_dir, tmp_path):
    out = tmp_path / "interrupted"
    cfg = minilm_config()

    def stop_after_first_epoch(record):
        if record["epoch"] == 1:
            raise _Interrupt("simulated kill after epoch 1")

    with pytest.raises(_Interrupt):
        finetune(cfg, out, data_dir=data_dir(), progress=False, callbacks=[stop_after_first_epoch])
    assert not is_complete(out)
    ckpt = torch.load(out / rf.CHECKPOINT, weights_only=True)  # loads as weights only
    assert ckpt["epoch"] == 1
    first = json.loads((out / rf.TRAIN_LOG).read_text())
    assert [e["epoch"] for e in first["epochs"]] == [1]

    seen = []
    finetune(cfg, out, data_dir=data_dir(), progress=False, callbacks=[lambda r: seen.append(r["epoch"])])
    assert seen == [2]  # epoch 1 was not trained again
    log = json.loads((out / rf.TRAIN_LOG).read_text())
    assert log["resumed_at_epoch"] == [1]
    assert log["epochs"][0] == first["epochs"][0]  # the interrupted attempt's record, kept
    assert is_complete(out)

    # Deterministic on CPU: the resumed run equals the uninterrupted reference run.
    ref = json.loads((run_dir / rf.TRAIN_LOG).read_text())
    for a, b in zip(log["epochs"], ref["epochs"], strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_accuracy"] == b["val_accuracy"]
    w_ref = load_file(str(run_dir / rf.ADAPTER / "adapter_model.safetensors"))
    w_new = load_file(str(out / rf.ADAPTER / "adapter_model.safetensors"))
    assert w_ref.keys() == w_new.keys()
    for k in w_ref:
        assert torch.equal(w_ref[k], w_new[k]), k
    # the best epoch's validation features survive the interruption (kept in the checkpoint)
    from adue.features import load_features

    assert np.array_equal(load_features(out, "validation").logits,
                          load_features(run_dir, "validation").logits)


@needs_minilm
def test_unfinished_run_with_other_config_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    minilm_config().to_json(out / rf.CONFIG)
    with pytest.raises(ValueError, match=r"another configuration \(lr: 0\.002 there vs 0\.001 now"):
        finetune(minilm_config(lr=1e-3), out, data_dir=data_dir(), progress=False)


@pytest.mark.slow
def test_two_process_data_parallel_run_matches_single_process(tmp_path):
    """The accelerate path with 2 CPU processes (gloo DDP): each takes half of every global
    batch; the losses match a single-process run up to LoRA-dropout noise."""
    import os
    import shutil
    import subprocess
    import sys

    from _pipeline import tiny_decoder_folder

    from adue.data import load_dataset

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.fail("torchrun (installed with torch) not found next to the Python executable")
    dd = data_dir()
    ds = load_dataset("sst2", dd, max_train=64, max_val=32, max_test=32)
    folder = tiny_decoder_folder(tmp_path, "llama", [t for s in ds for t in ds[s]["text"]])
    args = ["finetune", "--dataset", "sst2", "--backbone", str(folder), "--seed", "1",
            "--profile", "quick", "--max-train", "64", "--max-val", "32", "--max-test", "32",
            "--epochs", "2", "--batch-size", "16", "--max-length", "64", "--bf16", "false",
            "--lora-dropout", "0", "--data-dir", str(dd), "--no-progress"]
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    ddp = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "adue", *args, "--output", str(tmp_path / "ddp")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "adue", *args, "--output", str(tmp_path / "single")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    a = json.loads((tmp_path / "ddp" / rf.TRAIN_LOG).read_text())
    b = json.loads((tmp_path / "single" / rf.TRAIN_LOG).read_text())
    assert a["num_processes"] == 2 and b["num_processes"] == 1
    for ea, eb in zip(a["epochs"], b["epochs"], strict=True):
        assert ea["train_loss"] == pytest.approx(eb["train_loss"], abs=1e-4)
        assert ea["val_loss"] == pytest.approx(eb["val_loss"], abs=1e-4)
        assert ea["train_tokens"] == eb["train_tokens"]


def test_precision_is_ours_even_if_accelerate_state_says_bf16(tmp_path):
    """accelerate keeps one process-wide state; a bf16 Accelerator created earlier (e.g. by a
    transformers Trainer) must not turn a bf16=False run into a bf16 one."""
    from _pipeline import tiny_decoder_folder
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from adue.config import resolve_config
    from adue.data import load_dataset

    dd = data_dir()
    ds = load_dataset("sst2", dd, max_train=32, max_val=16, max_test=16)
    folder = tiny_decoder_folder(tmp_path, "llama", [t for s in ds for t in ds[s]["text"]])
    cfg = resolve_config("sst2", str(folder), 1, "quick", max_train=32, max_val=16, max_test=16,
                         epochs=1, batch_size=8, max_length=32, bf16=False)
    clean = json.loads((finetune(cfg, tmp_path / "a", data_dir=dd, progress=False)
                        / rf.TRAIN_LOG).read_text())
    try:
        AcceleratorState._reset_state(reset_partial_state=False)
        Accelerator(mixed_precision="bf16")
        after = json.loads((finetune(cfg, tmp_path / "b", data_dir=dd, progress=False)
                            / rf.TRAIN_LOG).read_text())
    finally:
        AcceleratorState._reset_state(reset_partial_state=False)
    assert after["bf16"] is False
    assert after["epochs"][0]["train_loss"] == clean["epochs"][0]["train_loss"]
    assert after["epochs"][0]["val_loss"] == clean["epochs"][0]["val_loss"]


def test_group_by_length_trains_the_same_rows_with_less_padding(tmp_path):
    from _pipeline import tiny_decoder_folder

    from adue.config import resolve_config
    from adue.data import load_dataset

    dd = data_dir()
    ds = load_dataset("sst2", dd, max_train=96, max_val=16, max_test=16)
    folder = tiny_decoder_folder(tmp_path, "llama", [t for s in ds for t in ds[s]["text"]])
    logs = {}
    for grouped in (False, True):
        cfg = resolve_config("sst2", str(folder), 1, "quick", max_train=96, max_val=16,
                             max_test=16, epochs=1, batch_size=8, max_length=64, bf16=False,
                             group_by_length=grouped)
        logs[grouped] = finetune(cfg, tmp_path / str(grouped), data_dir=dd, progress=False).log
    plain, grouped = logs[False]["epochs"][0], logs[True]["epochs"][0]
    assert grouped["train_tokens"] == plain["train_tokens"]  # the same rows, every one once
    assert plain["train_padded_tokens"] >= plain["train_tokens"]
    assert grouped["train_padded_tokens"] < 0.9 * plain["train_padded_tokens"]
    assert math.isfinite(grouped["train_loss"]) and grouped["train_loss"] != plain["train_loss"]


def test_distilbert_head_of_two_modules_is_trained_and_saved(tmp_path):
    """DistilBERT's head is ``pre_classifier`` + ``classifier``: both go into peft's
    modules_to_save (architectures.head_module_names), train, and the saved head reproduces
    the fine-tuned model's logits from its features."""
    from _pipeline import tiny_distilbert_folder

    from adue.config import resolve_config
    from adue.data import load_dataset
    from adue.extract import load_head

    dd = data_dir()
    ds = load_dataset("sst2", dd, max_train=64, max_val=16, max_test=16)
    folder = tiny_distilbert_folder(tmp_path, [t for s in ds for t in ds[s]["text"]])
    cfg = resolve_config("sst2", str(folder), 1, "quick", max_train=64, max_val=16, max_test=16,
                         epochs=1, batch_size=16, max_length=32, bf16=False)
    run = finetune(cfg, tmp_path / "run", data_dir=dd, progress=False)
    adapter = json.loads((run.run_dir / rf.ADAPTER / "adapter_config.json").read_text())
    assert {"pre_classifier", "classifier"} <= set(adapter["modules_to_save"])  # peft adds 'score'
    initial = load_file(str(folder / "model.safetensors"))
    from adue.features import load_features

    head = load_head(run.run_dir)
    assert head.hidden_features == 32  # pre_classifier (dense) -> ReLU -> classifier
    assert not torch.equal(head.dense.weight, initial["pre_classifier.weight"])  # it trained

    val = load_features(run.run_dir, "validation")
    with torch.no_grad():
        logits = head(torch.from_numpy(val.z)).numpy()
    np.testing.assert_allclose(logits, val.logits, atol=1e-4)
