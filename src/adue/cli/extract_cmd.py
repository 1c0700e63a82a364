"""``adue extract``: features z and logits of every split of a finished run."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "extract",
        help="extract features (z, logits) of a fine-tuned run",
        description=(
            "Write RUN_DIR/features/<split>.safetensors for train, validation and test: the "
            "classification head's input z and the logits of the same forward pass. Splits "
            "already written are kept (--overwrite rewrites them). The dataset, its columns "
            "and caps are the run's own (RUN_DIR/config.json)."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (adue finetune)")
    p.add_argument("--batch-size", type=int, metavar="N", help="default: the run's eval batch size")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder of the named datasets (default: as adue finetune finds it: "
        "$ADUE_DATA_DIR, else shared/data in the current folder or above, else the user "
        "cache, else the hub)",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        default=["train", "validation", "test"],
        choices=["train", "validation", "test"],
        help="splits to extract (default: all three)",
    )
    p.add_argument(
        "--device",
        metavar="DEVICE",
        help="auto, cpu, cuda or cuda:N (default: the run's device setting)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute and rewrite splits already written (e.g. a damaged features file)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from adue.device import check_device_setting
    from adue.extract import extract

    check_device_setting(args.device, "adue extract")
    feats = extract(
        args.run_dir,
        splits=tuple(args.splits),
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        progress=not args.no_progress,
        device=args.device,
        overwrite=args.overwrite,
    )
    for split, f in feats.items():
        print(f"{split}: {f.n} rows, d={f.dim}, {f.num_classes} classes, accuracy {f.accuracy():.4f}")
    return 0
