"""``adue finetune``: LoRA-fine-tune a backbone on a dataset into a run folder.

On several GPUs: ``accelerate launch -m adue finetune ...`` (same flags).
"""

from __future__ import annotations

import argparse


def _bf16(value: str) -> bool | str:
    v = value.lower()
    if v in ("auto",):
        return "auto"
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected auto, true or false, got {value!r}")


def _bool(value: str) -> bool:
    v = _bf16(value)
    if v == "auto":
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return bool(v)


def _names(module: str, attr: str) -> list[str]:
    try:
        mod = __import__(module, fromlist=[attr])
        return list(getattr(mod, attr))
    except Exception:  # noqa: BLE001 - help text only
        return []


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from adue.config import list_profiles

    datasets = _names("adue.data", "DATASETS")
    presets = _names("adue.backbones", "PRESETS")
    p = sub.add_parser(
        "finetune",
        help="LoRA-fine-tune a backbone on a dataset (writes a run folder)",
        description=(
            "LoRA-fine-tune a backbone as a sequence classifier and write a run folder "
            "(adapter + head, config, training log). A run folder that exists is never "
            "overwritten without --overwrite; an unfinished one with the same settings resumes "
            "after its last finished epoch. Multi-GPU: accelerate launch -m adue finetune ..."
        ),
    )
    p.add_argument(
        "--dataset",
        required=True,
        metavar="NAME",
        help=f"one of {', '.join(datasets)}, or a user folder (path or NAME=PATH)",
    )
    p.add_argument(
        "--backbone",
        required=True,
        metavar="NAME",
        help=f"preset ({', '.join(presets)}), a Hugging Face hub id or a local folder",
    )
    p.add_argument("--seed", type=int, required=True, help="training seed")
    p.add_argument("--output", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument(
        "--profile",
        default="cpu",
        choices=list_profiles(),
        help="settings to start from (default: cpu); every flag below overrides it",
    )
    g = p.add_argument_group("overrides of the profile")
    g.add_argument("--max-train", type=int, metavar="N", help="cap on train rows (0: no cap)")
    g.add_argument("--max-val", type=int, metavar="N", help="cap on validation rows (0: no cap)")
    g.add_argument("--max-test", type=int, metavar="N", help="cap on test rows (0: no cap)")
    g.add_argument("--epochs", type=int, metavar="N")
    g.add_argument("--batch-size", type=int, metavar="N", help="global batch per micro-step")
    g.add_argument("--grad-accum", type=int, metavar="N", help="micro-steps per optimizer step")
    g.add_argument("--lr", type=float, metavar="X", help="learning rate of the LoRA adapter")
    g.add_argument("--head-lr", type=float, metavar="X", help="learning rate of the head")
    g.add_argument("--weight-decay", type=float, metavar="X")
    g.add_argument("--warmup-ratio", type=float, metavar="X")
    g.add_argument("--max-length", type=int, metavar="N", help="truncate texts to N tokens")
    g.add_argument("--lora-r", type=int, metavar="N")
    g.add_argument("--lora-alpha", type=float, metavar="X")
    g.add_argument("--lora-dropout", type=float, metavar="X")
    g.add_argument("--eval-batch-size", type=int, metavar="N")
    g.add_argument("--bf16", type=_bf16, metavar="{auto,true,false}", help="bf16 autocast")
    g.add_argument(
        "--strip-text",
        type=_bool,
        metavar="{true,false}",
        help="strip whitespace around texts before tokenising",
    )
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder (else $ADUE_DATA_DIR)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a hub model's own Python code (off by default; only for models you trust)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from adue.config import resolve_config
    from adue.training import finetune

    cfg = resolve_config(
        args.dataset,
        args.backbone,
        args.seed,
        args.profile,
        max_train=args.max_train,
        max_val=args.max_val,
        max_test=args.max_test,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        head_lr=args.head_lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        max_length=args.max_length,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        eval_batch_size=args.eval_batch_size,
        bf16=args.bf16,
        strip_text=args.strip_text,
        trust_remote_code=True if args.trust_remote_code else None,
    )
    run_dir = finetune(
        cfg,
        args.output,
        overwrite=args.overwrite,
        data_dir=args.data_dir,
        progress=not args.no_progress,
    )
    import json

    log = json.loads((run_dir / "train_log.json").read_text(encoding="utf-8"))
    print(
        f"{run_dir}: best epoch {log['best_epoch']} of {cfg.epochs}, validation accuracy "
        f"{log['best_val_accuracy']:.4f}, training {log['total_train_seconds']:.0f} s"
    )
    return 0
