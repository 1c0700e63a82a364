"""``adue fit``: a trained classifier + data -> a bundle that predicts with uncertainty and abstains."""

from __future__ import annotations

import argparse
import json


def _method_params(text: str | None) -> dict:
    if not text:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--method-params must be a JSON object. Got {text!r} ({exc}) instead.") from exc
    if not isinstance(params, dict):
        raise ValueError(f"--method-params must be a JSON object. Got {text!r} instead.")
    return params


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from adue.cli._options import add_data_options

    p = sub.add_parser(
        "fit",
        help="fit uncertainty + an abstention threshold for your classifier; write a bundle",
        description=(
            "Load MODEL (an adue run folder, a save_pretrained folder, a PEFT adapter folder or a "
            "hub id), fit the uncertainty method on rows the classifier did not train on, calibrate "
            "the abstention threshold on rows neither saw, and write the bundle folder BUNDLE "
            "(bundle.json + method.safetensors). With --target-risk R --delta D the threshold "
            "guarantees selective risk <= R with probability >= 1 - D (Geifman & El-Yaniv 2017), "
            "assuming future inputs are exchangeable with the calibration rows; --coverage C keeps "
            "a share C with no guarantee."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="run folder, save_pretrained folder, PEFT adapter folder or hub id")
    p.add_argument("--data", required=True, metavar="DATASET", help="a named dataset or a user folder (NAME=PATH)")
    p.add_argument("--output", "-o", required=True, metavar="BUNDLE", help="bundle folder to write")
    p.add_argument("--base", metavar="BASE", help="base model of a PEFT adapter (preset, folder or hub id)")
    p.add_argument("--method", default="adue", help="uncertainty method (default: adue, paper grid, 5-fold CV)")
    p.add_argument("--method-params", metavar="JSON", help='method parameters, e.g. \'{"search": null}\'')
    p.add_argument("--fit-split", default="validation", choices=["validation", "train"],
                   help="rows the method is fitted on (default: validation, split with the calibration "
                        "rows; train = the paper's protocol, calibration on validation)")
    p.add_argument("--calibration-fraction", type=float, default=0.5, metavar="F",
                   help="share of the validation rows kept for calibration (default 0.5)")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--target-risk", type=float, metavar="R", help="guaranteed selective risk target in (0, 1)")
    rule.add_argument("--coverage", type=float, metavar="C", help="keep this share of inputs (no guarantee)")
    p.add_argument("--delta", type=float, default=0.05, metavar="D",
                   help="the guarantee holds with probability >= 1 - D (default 0.05)")
    p.add_argument("--max-rows", type=int, metavar="N", help="cap the train/validation splits (stratified draw)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--revision", help="hub revision of MODEL")
    p.add_argument("--trust-remote-code", action="store_true", help="run the model repo's own code (off by default)")
    p.add_argument("--copy-model", action="store_true", help="put the model (adapter merged) inside the bundle")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_data_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from adue.classifier import UncertainClassifier
    from adue.device import resolve_device

    out = Path(args.output)
    if out.exists() and not args.overwrite:  # fail before the slow part
        raise FileExistsError(f"The bundle folder {out} already exists. Choose another --output or pass --overwrite.")
    clf = UncertainClassifier.fit(
        args.model, args.data, base=args.base, method=args.method,
        method_params=_method_params(args.method_params), fit_split=args.fit_split,
        target_risk=args.target_risk, delta=args.delta, coverage=args.coverage,
        calibration_fraction=args.calibration_fraction, data_dir=args.data_dir,
        text_column=args.text_column, label_column=args.label_column, max_rows=args.max_rows,
        batch_size=args.batch_size, device=resolve_device(args.device), seed=args.seed,
        trust_remote_code=args.trust_remote_code, revision=args.revision, progress=not args.no_progress,
    )
    clf.save(out, copy_model=args.copy_model, overwrite=args.overwrite)
    info = clf.info()
    print(f"bundle: {out}")
    print(f"method: {info['method']['name']}" + (f" (fallback: {info['method']['fallback']})" if info["method"]["fallback"] else ""))
    print(clf.rule.message)
    return 0
