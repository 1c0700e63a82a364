"""The LoRA training loop (runs under ``accelerate``).

One optimizer step sees ``batch_size * grad_accum`` rows. The loss is the mean cross-entropy
over those rows, ``L = -(1/B) sum_i log softmax(f(x_i))[y_i]``; AdamW (decoupled weight decay;
none on biases and norms) with a linear warm-up over ``ceil(warmup_ratio * steps)`` steps then
linear decay to 0, global gradient-norm clipping at ``grad_clip``. After each epoch the model is
evaluated on the validation split in float32 (no autocast) and the best epoch by validation
accuracy (earliest on ties) is kept.

Under ``accelerate launch`` every process takes an equal slice of each global batch and DDP
averages the gradients, so the recipe (and ``batch_size``) means the same on 1 or N devices.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
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
from adue.training.sampling import shuffled_batches

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
    (``benchmarks/bench_pipeline.py`` measures whether it pays off there).
    """
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
) -> tuple[np.ndarray, float]:
    """Logits ``(n, C)`` (float32, original row order) and mean cross-entropy on ``ids``.

    Length-sorted batches, dynamic padding, eval mode, float32. With several processes each
    computes a slice of the batches and the results are gathered.
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
    _, logits_all = assemble(len(ids), parts)
    lab = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    loss = float(F.cross_entropy(torch.from_numpy(logits_all), lab).item())
    return logits_all, loss


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


# ------------------------------------------------------------------------------ train
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

    Returns the final training log. ``callbacks`` are called on the main process after each
    epoch's checkpoint is written, with that epoch's log record.
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from adue.architectures import classifier_head
    from adue.backbones import load_backbone

    accelerator = _make_accelerator()
    device = _run_device(cfg, accelerator)
    main = accelerator.is_main_process
    nproc = accelerator.num_processes
    rank = accelerator.process_index
    use_bf16 = resolve_bf16(cfg.bf16, device)

    # ---- data
    ds = load_run_splits(cfg, data_dir)
    names = class_names(ds)
    num_labels = len(names)

    # ---- model (seeded: head init and LoRA init depend on the seed only)
    set_seed(cfg.seed)
    model, tokenizer = load_backbone(
        cfg.backbone, num_labels, trust_remote_code=cfg.trust_remote_code
    )
    set_seed(cfg.seed + 1)
    model = wrap_lora(model, cfg).to(device)
    max_len = resolve_max_length(cfg, tokenizer)
    pad_id = pad_token_id(tokenizer)

    train_ids = encode_texts(tokenizer, split_texts(ds, "train", cfg), max_len)
    train_y = np.asarray(ds["train"]["label"], dtype=np.int64)
    val_ids = encode_texts(tokenizer, split_texts(ds, "validation", cfg), max_len)
    val_y = np.asarray(ds["validation"]["label"], dtype=np.int64)
    n_train = len(train_ids)
    if n_train == 0 or len(val_ids) == 0:
        raise ValueError(f"Empty split: train has {n_train} rows, validation {len(val_ids)}.")

    batches_per_epoch = math.ceil(n_train / cfg.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = math.ceil(cfg.warmup_ratio * total_steps)

    optimizer = torch.optim.AdamW(param_groups(model, cfg), betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(warmup_steps, total_steps))

    # ---- resume
    log: dict[str, Any] = {
        "epochs": [],
        "best_epoch": None,
        "best_val_accuracy": None,
        "resumed_at_epoch": [],
    }
    start_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    ckpt = rf.load_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        load_trainable_state(model, ckpt["trainable"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        best_state = ckpt["best_trainable"]
        start_epoch = int(ckpt["epoch"])
        old_log = rf.read_json(run_dir / rf.TRAIN_LOG) if (run_dir / rf.TRAIN_LOG).is_file() else None
        if old_log is not None:
            log = old_log
            log["epochs"] = [e for e in log["epochs"] if e["epoch"] <= start_epoch]
        log["best_epoch"] = int(ckpt["best_epoch"])
        log["best_val_accuracy"] = float(ckpt["best_val_accuracy"])
        log.setdefault("resumed_at_epoch", []).append(start_epoch)
        _set_rng_state(ckpt["rng"])
        logger.info("Resuming %s after epoch %d of %d", run_dir, start_epoch, cfg.epochs)
    elif resume:
        logger.info("No checkpoint in %s; starting the run from the beginning", run_dir)

    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)

    if main:
        atomic_write_json(
            run_dir / rf.DATASET,
            {
                "dataset": cfg.dataset,
                "class_names": names,
                "num_labels": num_labels,
                "sizes": {s: len(ds[s]) for s in ds},
                "max_length": max_len,
            },
        )
    log.update(
        {
            "bf16": use_bf16,
            "device": str(device),
            "num_processes": nproc,
            "max_length": max_len,
            "num_train": n_train,
            "num_val": len(val_ids),
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "warmup_steps": warmup_steps,
        }
    )
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16))
        if use_bf16
        else contextlib.nullcontext
    )

    # ---- epochs
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        c0 = time.process_time()
        batches = shuffled_batches(n_train, cfg.batch_size, seed=cfg.seed, epoch=epoch)
        if nproc > 1:
            dropped = [b for b in batches if len(b) < nproc]
            batches = [b for b in batches if len(b) >= nproc]
            if dropped:
                logger.info("Dropping a final batch of %d row(s) < %d processes", len(dropped[0]), nproc)
        loss_sum = 0.0
        rows_seen = 0
        tokens = 0
        bar = tqdm(
            total=len(batches),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (progress and main),
            leave=False,
        )
        for g0 in range(0, len(batches), cfg.grad_accum):
            group = batches[g0 : g0 + cfg.grad_accum]
            group_rows = sum(len(b) for b in group)
            for j, idx in enumerate(group):
                local = idx[rank::nproc]
                b = pad_batch([train_ids[i] for i in local], pad_id)
                y = torch.as_tensor(train_y[local], device=device)
                sync = j == len(group) - 1
                ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
                with ctx:
                    with autocast():
                        out = model(
                            input_ids=b["input_ids"].to(device),
                            attention_mask=b["attention_mask"].to(device),
                        )
                    ce = F.cross_entropy(out.logits.float(), y, reduction="sum")
                    accelerator.backward(ce * (nproc / group_rows))
                loss_sum += float(ce.detach())
                rows_seen += len(local)
                tokens += int(b["attention_mask"].sum())
                bar.update(1)
            if cfg.grad_clip is not None:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            bar.set_postfix(loss=f"{loss_sum / max(1, rows_seen):.4f}")
        bar.close()
        train_s = time.perf_counter() - t0
        train_cpu_s = time.process_time() - c0

        t1 = time.perf_counter()
        val_logits, val_loss = evaluate(
            raw_model,
            val_ids,
            val_y,
            pad_id=pad_id,
            batch_size=cfg.eval_batch_size,
            device=device,
            process_index=rank,
            num_processes=nproc,
        )
        val_acc = float((val_logits.argmax(1) == val_y).mean())
        eval_s = time.perf_counter() - t1
        if nproc > 1:
            from accelerate.utils import gather_object

            totals = gather_object([(loss_sum, rows_seen, tokens)])
            loss_sum = sum(t[0] for t in totals)
            rows_seen = sum(t[1] for t in totals)
            tokens = sum(t[2] for t in totals)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1, rows_seen),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr_end": [float(g["lr"]) for g in optimizer.param_groups],
            "train_tokens": tokens,
            "train_seconds": train_s,
            "train_cpu_seconds": train_cpu_s,
            "eval_seconds": eval_s,
        }
        log["epochs"].append(record)
        improved = log["best_val_accuracy"] is None or val_acc > log["best_val_accuracy"]
        if improved:
            log["best_epoch"] = epoch + 1
            log["best_val_accuracy"] = val_acc
            best_state = trainable_state(raw_model)
        (logger.info if main else logger.debug)(
            "epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.4f%s (%.1f s + %.1f s eval)",
            epoch + 1,
            cfg.epochs,
            record["train_loss"],
            val_loss,
            val_acc,
            " (best)" if improved else "",
            train_s,
            eval_s,
        )
        if main:
            # The log first, then the checkpoint (the commit point): a resume keeps only the
            # log's epochs up to the checkpoint's.
            atomic_write_json(run_dir / rf.TRAIN_LOG, log)
            rf.save_checkpoint(
                run_dir,
                {
                    "epoch": epoch + 1,
                    "best_epoch": log["best_epoch"],
                    "best_val_accuracy": log["best_val_accuracy"],
                    "trainable": trainable_state(raw_model),
                    "best_trainable": best_state,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(),
                },
            )
            for cb in callbacks:
                cb(dict(record))
        accelerator.wait_for_everyone()

    # ---- finish: best adapter + head
    if best_state is None:  # pragma: no cover - epochs >= 1 always sets it
        raise RuntimeError("No epoch was trained.")
    load_trainable_state(raw_model, best_state)
    if main:
        tmp = run_dir / f".{rf.ADAPTER}.tmp"
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        raw_model.save_pretrained(str(tmp), safe_serialization=True)
        rf.replace_dir(tmp, run_dir / rf.ADAPTER)
        merged = raw_model.merge_and_unload()
        head = classifier_head(merged)
        save_head(head, run_dir / rf.HEAD)
        log["total_train_seconds"] = sum(e["train_seconds"] for e in log["epochs"])
        log["total_eval_seconds"] = sum(e["eval_seconds"] for e in log["epochs"])
        atomic_write_json(run_dir / rf.TRAIN_LOG, log)
        atomic_write_json(run_dir / rf.VERSIONS, rf.provenance())
        atomic_write_json(
            run_dir / rf.COMPLETE,
            {
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "best_epoch": log["best_epoch"],
                "best_val_accuracy": log["best_val_accuracy"],
            },
        )
        ckpt_path = run_dir / rf.CHECKPOINT
        if ckpt_path.exists():
            ckpt_path.unlink()
            with contextlib.suppress(OSError):
                ckpt_path.parent.rmdir()
    accelerator.wait_for_everyone()
    return log


def save_head(head: Any, path: Path) -> None:
    """Write a :class:`adue.heads.ClassifierHead` (weights + constructor config) atomically."""
    import json

    from safetensors.torch import save_file

    from adue._atomic import atomic_path

    state = {k: v.detach().cpu().float().contiguous() for k, v in head.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata={"config": json.dumps(head.config())})
