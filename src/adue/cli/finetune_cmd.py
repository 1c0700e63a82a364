"""``adue finetune``: LoRA-fine-tune a backbone on a dataset into a run folder.

On several GPUs: ``accelerate launch -m adue finetune ...`` (same flags).
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from adue.backbones import PRESETS
    from adue.cli._config_options import add_config_options
    from adue.cli._options import add_data_options
    from adue.config import list_profiles
    from adue.data import DATASETS

    datasets, presets = list(DATASETS), list(PRESETS)
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
    add_data_options(p)
    add_config_options(p)
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
    from adue.cli._config_options import config_overrides
    from adue.config import resolve_config
    from adue.training import finetune

    cfg = resolve_config(
        args.dataset,
        args.backbone,
        args.seed,
        args.profile,
        trust_remote_code=True if args.trust_remote_code else None,
        **config_overrides(args),
    )
    result = finetune(
        cfg,
        args.output,
        overwrite=args.overwrite,
        data_dir=args.data_dir,
        progress=not args.no_progress,
    )
    log = result.log
    print(
        f"{result.run_dir}: best epoch {log['best_epoch']} of {cfg.epochs}, validation accuracy "
        f"{log['best_val_accuracy']:.4f}, training {log['total_train_seconds']:.0f} s"
    )
    return 0
