"""Pipeline benchmark on MiniLM (SST-2 rows), every figure measured in this one run.

1. Extraction: tokens/s with length-sorted batches and dynamic padding (what ``adue extract``
   does) vs every batch padded to ``max_length`` in dataset order (baseline), plus dynamic
   padding without sorting; the logits must agree.
2. Training: LoRA tokens/s of our loop (``adue.training.finetune``) vs a plain
   ``transformers.Trainer`` + peft on the same rows, same model, same recipe.
3. fp32 vs bf16 autocast on this CPU: training speed, and accuracy (validation and test) of a
   full ``cpu``-profile run in each precision.
4. Batching (``--only batching``): our loop with random batches (baseline) vs
   ``group_by_length`` (shuffled batches of similar-length rows), per dataset: real tokens per
   second, the share of padded positions, and the validation accuracy of the one epoch.

Run: ``.venv/bin/python benchmarks/bench_pipeline.py [--data-dir ../shared/data]``
(``--train-rows``, ``--repeats``, ``--skip-accuracy`` to size it). Tokens are real (non-pad)
tokens; speeds are the best of ``--repeats`` interleaved repetitions. Ratios are given on
process CPU time (robust when other jobs share the cores; run with ``OMP_NUM_THREADS=1`` so CPU
time is compute time) and on wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _data_dir(arg: str | None) -> str:
    d = arg or os.environ.get("ADUE_DATA_DIR") or str(ROOT.parent / "shared" / "data")
    if not (Path(d) / "sst2" / "train.tsv").is_file():
        raise SystemExit(f"SST-2 not found under {d}; pass --data-dir or set ADUE_DATA_DIR")
    return d


# ------------------------------------------------------------------------------ extraction
def bench_extraction(data_dir: str, rows: int, batch_size: int, repeats: int) -> list[dict]:
    from adue.architectures import features_and_logits
    from adue.backbones import load_backbone
    from adue.data import load_dataset
    from adue.inference import features_from_ids
    from adue.inference.tokenize import encode_texts, pad_batch, pad_token_id

    ds = load_dataset("sst2", data_dir, max_train=rows, max_val=100, max_test=100)
    torch.manual_seed(0)
    model, tok = load_backbone("minilm", 2)
    model.eval()
    max_len = 128
    ids = encode_texts(tok, ds["train"]["text"], max_len)
    pad = pad_token_id(tok)
    n_tokens = sum(len(s) for s in ids)

    @torch.no_grad()
    def in_order(pad_to):
        out = np.empty((len(ids), 2), dtype=np.float32)
        for i in range(0, len(ids), batch_size):
            b = pad_batch(ids[i : i + batch_size], pad, pad_to=pad_to)
            _, logits = features_and_logits(model, b["input_ids"], b["attention_mask"])
            out[i : i + batch_size] = logits.float().numpy()
        return out

    variants = {
        "padded to max_length, dataset order (baseline)": lambda: in_order(max_len),
        "dynamic padding, dataset order": lambda: in_order(None),
        "dynamic padding, length-sorted (adue extract)": lambda: features_from_ids(
            model, ids, pad_id=pad, batch_size=batch_size
        )[1],
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    results: dict[str, np.ndarray] = {}
    for _ in range(repeats):  # interleaved, best of `repeats`
        for name, fn in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    base = "padded to max_length, dataset order (baseline)"
    rows_out = []
    for name in variants:
        rows_out.append(
            _row(f"extraction: {name}", n_tokens, min(times[name]), min(cpu[name]),
                 min(times[base]), min(cpu[base]),
                 max_abs_logit_diff=float(np.abs(results[name] - results[base]).max()))
        )
    return rows_out


def _row(what, tokens, wall, cpu, base_wall, base_cpu, **extra) -> dict:
    return {"what": what, "tokens_per_s": tokens / wall, "tokens_per_cpu_s": tokens / cpu,
            "seconds": wall, "cpu_seconds": cpu, "ratio_wall": base_wall / wall,
            "ratio_cpu": base_cpu / cpu, **extra}


# ------------------------------------------------------------------------------ training
def _our_run(cfg, data_dir: str, root: Path, name: str, *, evaluate: bool = True) -> dict:
    from adue.extract import extract
    from adue.training import finetune

    run = finetune(cfg, root / name, data_dir=data_dir, progress=False)
    log = run.log
    tokens = sum(e["train_tokens"] for e in log["epochs"])
    secs = sum(e["train_seconds"] for e in log["epochs"])  # the epoch loops, not evaluation
    cpu = sum(e["train_cpu_seconds"] for e in log["epochs"])
    out = {"tokens": tokens, "seconds": secs, "cpu_seconds": cpu,
           "padded": sum(e.get("train_padded_tokens", 0) for e in log["epochs"]),
           "val_per_epoch": [e["val_accuracy"] for e in log["epochs"]]}
    if evaluate:
        feats = extract(run, splits=("validation", "test"), data_dir=data_dir, progress=False)
        out.update(val_acc=feats["validation"].accuracy(), test_acc=feats["test"].accuracy())
    return out


def _trainer_run(cfg, data_dir: str, root: Path, bf16: bool) -> dict:
    """The same recipe through transformers.Trainer + peft (no evaluation, no saving)."""
    import datasets
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from adue.backbones import load_backbone
    from adue.data import load_dataset
    from adue.inference.tokenize import encode_texts
    from adue.training.lora import wrap_lora

    ds = load_dataset(
        cfg.dataset, data_dir, max_train=cfg.max_train, max_val=cfg.max_val, max_test=cfg.max_test
    )
    torch.manual_seed(cfg.seed)
    model, tok = load_backbone(cfg.backbone, 2)
    torch.manual_seed(cfg.seed + 1)
    model = wrap_lora(model, cfg)
    ids = encode_texts(tok, ds["train"]["text"], cfg.max_length)
    train = datasets.Dataset.from_dict({"input_ids": ids, "labels": list(ds["train"]["label"])})
    args = TrainingArguments(
        output_dir=str(root / "trainer"),
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="linear",
        max_grad_norm=cfg.grad_clip,
        bf16=bf16,
        use_cpu=True,
        optim="adamw_torch",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=cfg.seed,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok)
    )
    c0 = time.process_time()
    out = trainer.train()
    cpu = time.process_time() - c0
    secs = float(out.metrics["train_runtime"])  # the Trainer's own timing of its training loop
    tokens = sum(len(s) for s in ids) * cfg.epochs
    return {"tokens": tokens, "seconds": secs, "cpu_seconds": cpu}


def bench_training(data_dir: str, rows: int, repeats: int) -> list[dict]:
    """Speed: ours vs Trainer, fp32 and bf16, ``rows`` x 1 epoch, interleaved, best of
    ``repeats``."""
    from adue.config import resolve_config

    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        res: dict[str, list[dict]] = {}
        for rep in range(repeats):
            for bf16 in (False, True):
                cfg = resolve_config(
                    "sst2", "minilm", 1, "cpu", max_train=rows, max_val=200, max_test=200,
                    epochs=1, bf16=bf16,
                )
                tag = "bf16" if bf16 else "fp32"
                res.setdefault(f"ours_{tag}", []).append(
                    _our_run(cfg, data_dir, root, f"{tag}{rep}", evaluate=False)
                )
                res.setdefault(f"trainer_{tag}", []).append(_trainer_run(cfg, data_dir, root, bf16))
        best = {k: min(v, key=lambda r: r["cpu_seconds"]) for k, v in res.items()}
        bw = {k: min(r["seconds"] for r in v) for k, v in res.items()}
        for tag in ("fp32", "bf16"):
            t, o = best[f"trainer_{tag}"], best[f"ours_{tag}"]
            tw, ow = bw[f"trainer_{tag}"], bw[f"ours_{tag}"]
            rows_out.append(_row(f"training {tag}: transformers Trainer + peft (baseline)",
                                 t["tokens"], tw, t["cpu_seconds"], tw, t["cpu_seconds"]))
            rows_out.append(_row(f"training {tag}: adue finetune loop",
                                 o["tokens"], ow, o["cpu_seconds"], tw, t["cpu_seconds"]))
        f32, b16 = best["ours_fp32"], best["ours_bf16"]
        rows_out.append(_row("training speed: adue loop fp32 (baseline)", f32["tokens"],
                             bw["ours_fp32"], f32["cpu_seconds"], bw["ours_fp32"], f32["cpu_seconds"]))
        rows_out.append(_row("training speed: adue loop bf16 autocast", b16["tokens"],
                             bw["ours_bf16"], b16["cpu_seconds"], bw["ours_fp32"], f32["cpu_seconds"]))
    return rows_out


def bench_precision_accuracy(data_dir: str) -> list[dict]:
    """fp32 vs bf16 autocast: one full ``cpu``-profile MiniLM run each (2,000 rows, 3 epochs)."""
    from adue.config import resolve_config

    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = None
        for bf16 in (False, True):
            cfg = resolve_config("sst2", "minilm", 1, "cpu", bf16=bf16)
            r = _our_run(cfg, data_dir, root, "bf16" if bf16 else "fp32")
            base = base or r
            per_epoch = ", ".join(f"{a:.3f}" for a in r["val_per_epoch"])
            rows_out.append(_row(
                f"cpu profile run, {'bf16 autocast' if bf16 else 'fp32 (baseline)'}"
                f" (val acc per epoch {per_epoch})",
                r["tokens"], r["seconds"], r["cpu_seconds"], base["seconds"], base["cpu_seconds"],
                val_acc=r["val_acc"], test_acc=r["test_acc"],
            ))
    return rows_out


def bench_batching(data_dir: str, rows: int, repeats: int, datasets: list[str]) -> list[dict]:
    """Random batches vs ``group_by_length``: MiniLM, ``rows`` x 1 epoch of the cpu profile
    (its max_length per dataset), interleaved, best of ``repeats``."""
    from adue.config import resolve_config

    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for dataset in datasets:
            res: dict[bool, list[dict]] = {False: [], True: []}
            for rep in range(repeats):
                for grouped in (False, True):
                    cfg = resolve_config(dataset, "minilm", 1, "cpu", max_train=rows, max_val=200,
                                         max_test=200, epochs=1, group_by_length=grouped)
                    res[grouped].append(_our_run(cfg, data_dir, root, f"{dataset}{grouped}{rep}",
                                                 evaluate=False))
            best = {g: min(v, key=lambda r: r["cpu_seconds"]) for g, v in res.items()}
            wall = {g: min(r["seconds"] for r in v) for g, v in res.items()}
            base = best[False]
            for grouped in (False, True):
                r = best[grouped]
                what = "group_by_length" if grouped else "random batches (baseline)"
                rows_out.append(_row(
                    f"training {dataset}: {what}, padding {1 - r['tokens'] / r['padded']:.0%}"
                    f" of positions", r["tokens"], wall[grouped], r["cpu_seconds"], wall[False],
                    base["cpu_seconds"], val_acc=r["val_per_epoch"][-1],
                ))
    return rows_out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir")
    p.add_argument("--extract-rows", type=int, default=2000)
    p.add_argument("--train-rows", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-accuracy", action="store_true", help="skip the two cpu-profile runs")
    p.add_argument("--only", choices=["batching"], help="run only this section")
    p.add_argument("--batching-datasets", default="sst2,20newsgroups",
                   help="datasets of the batching section (comma-separated)")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    data_dir = _data_dir(args.data_dir)

    datasets = [d for d in args.batching_datasets.split(",") if d]
    if args.only == "batching":
        rows = bench_batching(data_dir, args.train_rows, args.repeats, datasets)
    else:
        rows = bench_extraction(data_dir, args.extract_rows, 64, args.repeats)
        rows += bench_training(data_dir, args.train_rows, args.repeats)
        if not args.skip_accuracy:
            rows += bench_precision_accuracy(data_dir)
        rows += bench_batching(data_dir, args.train_rows, args.repeats, datasets)

    def fmt(r, k, spec):
        return format(r[k], spec) if k in r else ""

    if args.only == "batching":
        print(f"MiniLM; torch {torch.__version__}, {torch.get_num_threads()} threads; best of "
              f"{args.repeats}; cpu profile, {args.train_rows} train rows x 1 epoch (batch 32), "
              "200 validation rows")
    else:
        print(f"MiniLM; torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"best of {args.repeats}; extraction {args.extract_rows} rows (batch 64, "
              f"max_length 128); training speed {args.train_rows} rows x 1 epoch (batch 32); "
              "accuracy: cpu profile (2,000 / 1,000 / 872 rows, 3 epochs)")
    print()
    print("| measurement | tokens/s (wall) | tokens/CPU-s | CPU s | ratio (CPU time) "
          "| ratio (wall) | max abs logit diff | val acc | test acc |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['tokens_per_s']:.0f} | {r['tokens_per_cpu_s']:.0f} | "
              f"{r['cpu_seconds']:.1f} | {r['ratio_cpu']:.2f}x | {r['ratio_wall']:.2f}x | "
              f"{fmt(r, 'max_abs_logit_diff', '.1e')} | {fmt(r, 'val_acc', '.4f')} | "
              f"{fmt(r, 'test_acc', '.4f')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
