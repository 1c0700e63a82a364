"""The LoRA training loop (runs under ``accelerate``).

One optimizer step sees ``batch_size * grad_accum`` rows. The loss is the mean cross-entropy
over those rows, ``L = -(1/B) sum_i log softmax(f(x_i))[y_i]``; AdamW (decoupled weight decay;
none on biases and norms) with a linear warm-up over ``ceil(warmup_ratio * steps)`` steps then
linear decay to 0, global gradient-norm clipping at ``grad_clip``. After each epoch the model is
evaluated on the validation split in float32 (no autocast) by the forward pass of extraction
(:func:`adue.inference.forward_batches`), and the best epoch by validation accuracy (earliest on
ties) is kept, with its validation pass as the run's validation features. Batches are random
(``shuffled_batches``) or, with ``group_by_length``, shuffled groups of similar-length rows
(``length_grouped_batches``); both are functions of (seed, epoch), so a resumed run sees the
same batches.

Under ``accelerate launch`` every process takes an equal slice of each global batch and DDP
averages the gradients, so the recipe (and ``batch_size``) means the same on 1 or N devices.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adue._atomic import atomic_write_json
from adue.config import RunConfig
from adue.device import resolve_device
from adue.inference import assemble, forward_batches
from adue.inference.tokenize import encode_texts, length_sorted_batches, pad_batch, pad_token_id
from adue.training import runfolder as rf
from adue.training.inputs import class_names, load_run_splits, resolve_max_length, split_texts
from adue.training.lora import load_trainable_state, param_groups, trainable_state, wrap_lora
from adue.training.sampling import length_grouped_batches, shuffled_batches

__all__ = ["train_run", "evaluate", "resolve_bf16", "cpu_has_fast_bf16"]

logger = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any]], None]


# ------------------------------------------------------------------------------ settings
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_bf16(setting: bool | str, device: torch.device) -> bool:
    """Turn the ``bf16`` setting into a yes/no for ``device``.

    ``"auto"``: CUDA devices that support bf16, and CPUs with native bf16 instructions
    (AVX-512 BF16 or AMX; ``benchmarks/bench_pipeline.py`` measures whether it pays off).
    Elsewhere -- e.g. an AVX2 CPU -- ``"auto"`` stays float32, and an explicit ``True`` is
    honoured with a warning: autocast then emulates bf16 and is slower than float32.
    """
    if setting is True and device.type == "cpu" and not cpu_has_fast_bf16():
        logger.warning(
            "bf16=True on a CPU without native bf16 instructions (no AVX-512 BF16 / AMX): "
            "bf16 autocast is emulated here and slower than float32; use bf16='auto' or False"
        )
    if setting is True or setting is False:
        return bool(setting)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


# ------------------------------------------------------------------------------ eval
@torch.no_grad()
def evaluate(
    model: nn.Module,
    ids: Sequence[Sequence[int]],
    labels: np.ndarray,
    *,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    process_index: int = 0,
    num_processes: int = 1,
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(z (n, d), logits (n, C), mean cross-entropy)`` on ``ids``, float32, row order.

    The forward pass of extraction (:func:`adue.inference.forward_batches`: length-sorted
    batches, dynamic padding, eval mode, no autocast). With several processes each computes
    a slice of the batches and the results are gathered.
    """
    was_training = model.training
    model.eval()
    try:
        batches = length_sorted_batches([len(s) for s in ids], batch_size)
        mine = batches[process_index::num_processes]
        parts = list(forward_batches(model, ids, mine, pad_id=pad_id, device=device))
    finally:
        model.train(was_training)
    if num_processes > 1:
        from accelerate.utils import gather_object

        parts = gather_object(parts)
    z, logits = assemble(len(ids), parts)
    lab = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    loss = float(F.cross_entropy(torch.from_numpy(logits), lab).item())
    return z, logits, loss


# ------------------------------------------------------------------------------ helpers
def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup) if warmup else 1.0
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def _make_accelerator() -> Any:
    """An ``Accelerator`` without accelerate's own mixed precision.

    Precision is ours to set (``cfg.bf16``: autocast around the training forward only, float32
    evaluation). accelerate keeps one process-wide state: if earlier code in this process (e.g.
    a ``transformers.Trainer`` with ``bf16=True``) or ``accelerate launch --mixed_precision``
    set it to bf16/fp16, ``prepare`` would silently wrap our model's forward -- evaluation
    included -- in autocast. The mixed-precision part of that state is reset (as the Trainer
    itself does); the process group is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision", "no") != "no":
        logger.info(
            "Resetting accelerate's mixed precision %r: adue sets precision with the bf16 setting",
            shared.get("_mixed_precision"),
        )
        AcceleratorState._reset_state(reset_partial_state=False)
    # device_placement=False: the model goes to the run's own device (cfg.device) before the
    # optimizer is built, see _run_device.
    return Accelerator(mixed_precision="no", device_placement=False)


def _run_device(cfg: RunConfig, accelerator: Any) -> torch.device:
    """The run's device: ``cfg.device`` in a single process; under ``accelerate launch``
    each process's own device (the setting cannot name one device for all of them)."""
    if accelerator.num_processes > 1:
        if cfg.device != "auto":
            logger.warning(
                "device %r is ignored under accelerate launch: each of the %d processes uses "
                "its own device (%s here)",
                cfg.device,
                accelerator.num_processes,
                accelerator.device,
            )
        return accelerator.device
    return resolve_device(cfg.device)


# ------------------------------------------------------------------------------ stages
@dataclass
class _Inputs:
    """The tokenised train and validation rows of a run."""

    names: list[str]
    sizes: dict[str, int]
    max_len: int
    pad_id: int
    train_ids: list[list[int]]
    train_y: np.ndarray
    val_ids: list[list[int]]
    val_y: np.ndarray
    fingerprint: str  # adue.data.dataset_fingerprint of the loaded splits


@dataclass
class _State:
    """Everything one run carries from epoch to epoch."""

    cfg: RunConfig
    run_dir: Path
    accelerator: Any
    device: torch.device
    model: Any
    optimizer: Any
    scheduler: Any
    use_bf16: bool
    log: dict[str, Any]
    start_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_val: tuple[np.ndarray, np.ndarray] | None = None  # (z, logits) of the best epoch
    raw_model: Any = None

    @property
    def main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def nproc(self) -> int:
        return int(self.accelerator.num_processes)

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index)


def _load_inputs(cfg: RunConfig, data_dir: str | None) -> tuple[Any, int]:
    ds = load_run_splits(cfg, data_dir)
    return ds, len(class_names(ds))


def _tokenise(cfg: RunConfig, ds: Any, tokenizer: Any) -> _Inputs:
    """Tokenise train and validation once (truncated, unpadded)."""
    from adue.data import dataset_fingerprint

    max_len = resolve_max_length(cfg, tokenizer)
    train_ids = encode_texts(tokenizer, split_texts(ds, "train", cfg), max_len)
    val_ids = encode_texts(tokenizer, split_texts(ds, "validation", cfg), max_len)
    if not train_ids or not val_ids:
        raise ValueError(f"Empty split: train has {len(train_ids)} rows, validation {len(val_ids)}.")
    return _Inputs(
        names=class_names(ds),
        sizes={s: len(ds[s]) for s in ds},
        max_len=max_len,
        pad_id=pad_token_id(tokenizer),
        train_ids=train_ids,
        train_y=np.asarray(ds["train"]["label"], dtype=np.int64),
        val_ids=val_ids,
        val_y=np.asarray(ds["validation"]["label"], dtype=np.int64),
        fingerprint=dataset_fingerprint(ds),
    )


def _build_model(cfg: RunConfig, num_labels: int, device: torch.device) -> tuple[Any, Any]:
    """The LoRA-wrapped backbone on ``device`` (seeded: head and LoRA init depend on the seed)."""
    from accelerate.utils import set_seed

    from adue.backbones import load_backbone

    set_seed(cfg.seed)
    model, tokenizer = load_backbone(cfg.backbone, num_labels, trust_remote_code=cfg.trust_remote_code)
    set_seed(cfg.seed + 1)
    return wrap_lora(model, cfg).to(device), tokenizer


def _schedule(cfg: RunConfig, n_train: int) -> dict[str, int]:
    batches_per_epoch = math.ceil(n_train / cfg.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    return {"steps_per_epoch": steps_per_epoch, "total_steps": total,
            "warmup_steps": math.ceil(cfg.warmup_ratio * total)}


def _optimizer(model: Any, cfg: RunConfig, steps: dict[str, int]) -> tuple[Any, Any]:
    optimizer = torch.optim.AdamW(param_groups(model, cfg), betas=(0.9, 0.999), eps=1e-8)
    schedule = _linear_schedule(steps["warmup_steps"], steps["total_steps"])
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _resume(st: _State, resume: bool) -> None:
    """Load the last epoch checkpoint (model, optimizer, scheduler, RNG, best so far) and the
    log records up to it."""
    ckpt = rf.load_checkpoint(st.run_dir) if resume else None
    if ckpt is None:
        if resume:
            logger.info("No checkpoint in %s; starting the run from the beginning", st.run_dir)
        return
    load_trainable_state(st.model, ckpt["trainable"])
    st.optimizer.load_state_dict(ckpt["optimizer"])
    st.scheduler.load_state_dict(ckpt["scheduler"])
    st.best_state = ckpt["best_trainable"]
    if "best_val_z" in ckpt:
        st.best_val = (ckpt["best_val_z"].numpy(), ckpt["best_val_logits"].numpy())
    st.start_epoch = int(ckpt["epoch"])
    log_path = st.run_dir / rf.TRAIN_LOG
    if log_path.is_file():
        st.log = rf.read_json(log_path)
        st.log["epochs"] = [e for e in st.log["epochs"] if e["epoch"] <= st.start_epoch]
    st.log["best_epoch"] = int(ckpt["best_epoch"])
    st.log["best_val_accuracy"] = float(ckpt["best_val_accuracy"])
    st.log.setdefault("resumed_at_epoch", []).append(st.start_epoch)
    _set_rng_state(ckpt["rng"])
    logger.info("Resuming %s after epoch %d of %d", st.run_dir, st.start_epoch, st.cfg.epochs)


def _epoch_batches(st: _State, inputs: _Inputs, epoch: int) -> list[np.ndarray]:
    cfg = st.cfg
    if cfg.group_by_length:
        lengths = [len(s) for s in inputs.train_ids]
        batches = length_grouped_batches(lengths, cfg.batch_size, seed=cfg.seed, epoch=epoch)
    else:
        batches = shuffled_batches(len(inputs.train_ids), cfg.batch_size, seed=cfg.seed, epoch=epoch)
    if st.nproc > 1:
        dropped = [b for b in batches if len(b) < st.nproc]
        batches = [b for b in batches if len(b) >= st.nproc]
        if dropped:
            logger.info("Dropping a final batch of %d row(s) < %d processes", len(dropped[0]), st.nproc)
    return batches


def _optimizer_step(
    st: _State, inputs: _Inputs, group: list[np.ndarray], autocast: Any
) -> tuple[float, int, int, int]:
    """Forward/backward over the micro-batches of one optimizer step, then the step.

    Returns this process's summed loss, rows, real tokens and padded positions.
    """
    group_rows = sum(len(b) for b in group)
    loss_sum, rows, tokens, padded = 0.0, 0, 0, 0
    for j, idx in enumerate(group):
        local = idx[st.rank :: st.nproc]
        b = pad_batch([inputs.train_ids[i] for i in local], inputs.pad_id)
        y = torch.as_tensor(inputs.train_y[local], device=st.device)
        sync = j == len(group) - 1
        ctx = contextlib.nullcontext() if sync else st.accelerator.no_sync(st.model)
        with ctx:
            with autocast():
                out = st.model(
                    input_ids=b["input_ids"].to(st.device),
                    attention_mask=b["attention_mask"].to(st.device),
                )
            ce = F.cross_entropy(out.logits.float(), y, reduction="sum")
            st.accelerator.backward(ce * (st.nproc / group_rows))
        loss_sum += float(ce.detach())
        rows += len(local)
        tokens += int(b["attention_mask"].sum())
        padded += int(b["attention_mask"].numel())
    if st.cfg.grad_clip is not None:
        st.accelerator.clip_grad_norm_(st.model.parameters(), st.cfg.grad_clip)
    st.optimizer.step()
    st.scheduler.step()
    st.optimizer.zero_grad(set_to_none=True)
    return loss_sum, rows, tokens, padded


def _train_epoch(st: _State, inputs: _Inputs, epoch: int, progress: bool) -> dict[str, Any]:
    """One pass over the training rows; returns the summed loss, rows, tokens and times."""
    from tqdm.auto import tqdm

    st.model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    batches = _epoch_batches(st, inputs, epoch)
    autocast = (
        (lambda: torch.autocast(device_type=st.device.type, dtype=torch.bfloat16))
        if st.use_bf16
        else contextlib.nullcontext
    )
    totals = [0.0, 0, 0, 0]
    desc = f"epoch {epoch + 1}/{st.cfg.epochs}"
    with tqdm(total=len(batches), desc=desc, disable=not (progress and st.main), leave=False) as bar:
        for g0 in range(0, len(batches), st.cfg.grad_accum):
            group = batches[g0 : g0 + st.cfg.grad_accum]
            for k, v in enumerate(_optimizer_step(st, inputs, group, autocast)):
                totals[k] += v
            bar.update(len(group))
            bar.set_postfix(loss=f"{totals[0] / max(1, totals[1]):.4f}")
    if st.nproc > 1:
        from accelerate.utils import gather_object

        gathered = gather_object([tuple(totals)])
        totals = [sum(t[k] for t in gathered) for k in range(4)]
    return {"loss_sum": totals[0], "rows": totals[1], "tokens": totals[2], "padded": totals[3],
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def _validate_epoch(st: _State, inputs: _Inputs, epoch: int, stats: dict[str, Any]) -> dict[str, Any]:
    """Evaluate on validation, record the epoch in the log and keep the best epoch's
    trainable state and validation features. Returns the epoch's log record."""
    t1 = time.perf_counter()
    z, logits, val_loss = evaluate(
        st.raw_model, inputs.val_ids, inputs.val_y, pad_id=inputs.pad_id,
        batch_size=st.cfg.eval_batch_size, device=st.device, process_index=st.rank,
        num_processes=st.nproc,
    )
    val_acc = float((logits.argmax(1) == inputs.val_y).mean())
    record = {
        "epoch": epoch + 1,
        "train_loss": stats["loss_sum"] / max(1, stats["rows"]),
        "val_loss": val_loss,
        "val_accuracy": val_acc,
        "lr_end": [float(g["lr"]) for g in st.optimizer.param_groups],
        "train_tokens": stats["tokens"],
        "train_padded_tokens": stats["padded"],
        "train_seconds": stats["seconds"],
        "train_cpu_seconds": stats["cpu_seconds"],
        "eval_seconds": time.perf_counter() - t1,
    }
    st.log["epochs"].append(record)
    improved = st.log["best_val_accuracy"] is None or val_acc > st.log["best_val_accuracy"]
    if improved:
        st.log["best_epoch"] = epoch + 1
        st.log["best_val_accuracy"] = val_acc
        st.best_state = trainable_state(st.raw_model)
        st.best_val = (z, logits)
    (logger.info if st.main else logger.debug)(
        "epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.4f%s (%.1f s + %.1f s eval)",
        epoch + 1, st.cfg.epochs, record["train_loss"], val_loss, val_acc,
        " (best)" if improved else "", record["train_seconds"], record["eval_seconds"],
    )
    return record


def _save_epoch(st: _State, epoch: int) -> None:
    """The log first, then the checkpoint (the commit point): a resume keeps only the log's
    epochs up to the checkpoint's."""
    atomic_write_json(st.run_dir / rf.TRAIN_LOG, st.log)
    state = {
        "epoch": epoch + 1,
        "best_epoch": st.log["best_epoch"],
        "best_val_accuracy": st.log["best_val_accuracy"],
        "trainable": trainable_state(st.raw_model),
        "best_trainable": st.best_state,
        "optimizer": st.optimizer.state_dict(),
        "scheduler": st.scheduler.state_dict(),
        "rng": _rng_state(),
    }
    if st.best_val is not None:
        state["best_val_z"] = torch.from_numpy(st.best_val[0])
        state["best_val_logits"] = torch.from_numpy(st.best_val[1])
    rf.save_checkpoint(st.run_dir, state)


def _finish(st: _State, inputs: _Inputs) -> None:
    """Write the best adapter, its head, the validation features of the best epoch, the log,
    the provenance and the completion marker (last); remove the checkpoint."""
    from adue.architectures import classifier_head
    from adue.features import Features

    tmp = st.run_dir / f".{rf.ADAPTER}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    st.raw_model.save_pretrained(str(tmp), safe_serialization=True)
    rf.replace_dir(tmp, st.run_dir / rf.ADAPTER)
    save_head(classifier_head(st.raw_model.merge_and_unload()), st.run_dir / rf.HEAD)
    if st.best_val is not None:  # the best epoch's validation pass is the validation features
        z, logits = st.best_val
        rf.save_split_features(st.run_dir, st.cfg, "validation", Features(z=z, logits=logits, labels=inputs.val_y))
    atomic_write_json(st.run_dir / rf.TRAIN_LOG, st.log)
    atomic_write_json(st.run_dir / rf.VERSIONS, rf.provenance())
    atomic_write_json(
        st.run_dir / rf.COMPLETE,
        {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "best_epoch": st.log["best_epoch"],
         "best_val_accuracy": st.log["best_val_accuracy"]},
    )
    ckpt_path = st.run_dir / rf.CHECKPOINT
    if ckpt_path.exists():
        ckpt_path.unlink()
        with contextlib.suppress(OSError):
            ckpt_path.parent.rmdir()


def _start_log(st: _State, inputs: _Inputs, steps: dict[str, int]) -> None:
    if st.main:
        atomic_write_json(
            st.run_dir / rf.DATASET,
            {"dataset": st.cfg.dataset, "class_names": inputs.names, "num_labels": len(inputs.names),
             "sizes": inputs.sizes, "max_length": inputs.max_len, "fingerprint": inputs.fingerprint},
        )
    st.log.update(
        {"bf16": st.use_bf16, "device": str(st.device), "num_processes": st.nproc,
         "max_length": inputs.max_len, "num_train": len(inputs.train_ids),
         "num_val": len(inputs.val_ids), **steps}
    )


# ------------------------------------------------------------------------------ train
def train_run(
    cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool,
    data_dir: str | None = None,
    progress: bool = True,
    callbacks: Sequence[EpochCallback] = (),
) -> dict[str, Any]:
    """Fine-tune ``cfg`` into ``run_dir`` (prepared by :func:`runfolder.prepare_run_dir`).

    Returns the final training log (on every process). ``callbacks`` are called on the main
    process after each epoch's checkpoint is written, with that epoch's log record.
    """
    accelerator = _make_accelerator()
    device = _run_device(cfg, accelerator)
    ds, num_labels = _load_inputs(cfg, data_dir)
    model, tokenizer = _build_model(cfg, num_labels, device)
    inputs = _tokenise(cfg, ds, tokenizer)
    steps = _schedule(cfg, len(inputs.train_ids))
    optimizer, scheduler = _optimizer(model, cfg, steps)
    log = {"epochs": [], "best_epoch": None, "best_val_accuracy": None, "resumed_at_epoch": []}
    st = _State(cfg, run_dir, accelerator, device, model, optimizer, scheduler,
                resolve_bf16(cfg.bf16, device), log)
    _resume(st, resume)
    st.model, st.optimizer = accelerator.prepare(st.model, st.optimizer)
    st.raw_model = accelerator.unwrap_model(st.model)
    _start_log(st, inputs, steps)
    for epoch in range(st.start_epoch, cfg.epochs):
        stats = _train_epoch(st, inputs, epoch, progress)
        record = _validate_epoch(st, inputs, epoch, stats)
        if st.main:
            _save_epoch(st, epoch)
            for cb in callbacks:
                cb(dict(record))
        accelerator.wait_for_everyone()
    if st.best_state is None:  # pragma: no cover - epochs >= 1 always sets it
        raise RuntimeError("No epoch was trained.")
    load_trainable_state(st.raw_model, st.best_state)
    st.log["total_train_seconds"] = sum(e["train_seconds"] for e in st.log["epochs"])
    st.log["total_eval_seconds"] = sum(e["eval_seconds"] for e in st.log["epochs"])
    if st.main:
        _finish(st, inputs)
    accelerator.wait_for_everyone()
    return st.log


def save_head(head: Any, path: Path) -> None:
    """Write a :class:`adue.heads.ClassifierHead` (weights + constructor config) atomically."""
    import json

    from safetensors.torch import save_file

    from adue._atomic import atomic_path

    state = {k: v.detach().cpu().float().contiguous() for k, v in head.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata={"config": json.dumps(head.config())})
