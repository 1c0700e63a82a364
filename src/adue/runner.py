"""One cell of the experiment grid: fine-tune (or reuse), extract, score every variant, write JSON.

A *cell* is one (profile, backbone, dataset, seed). :func:`run_cell` writes one JSON file at
``RESULTS/<profile>/<backbone>/<dataset>/seed<S>.json`` (atomically: temp file + rename), so a
cell file is either absent, or complete, or records the failure of its run. ``<dataset>`` is
the dataset's *name* (:func:`adue.data.dataset_name`: a named dataset, a folder's base name, or
NAME of ``NAME=PATH``), never a path: nothing is written inside a data folder. Schema 2::

    {
      "schema_version": 2,
      "status": "complete" | "failed",
      "cell": {"profile", "backbone", "dataset", "seed"},  # dataset: the name
      "config": {...resolved RunConfig...},               # config["dataset"]: the spec given
      "data": {"spec", "name", "fingerprint"},            # adue.data.dataset_fingerprint
      "run_dir": "...", "finetune_reused": bool, "device": "cpu" | "cuda:0" | ...,
      "versions": {"python", "adue", "torch", ...}, "git_commit": str | null,
      "started_at", "finished_at",                       # ISO 8601, UTC
      "timings_s": {"finetune", "extract", "methods", "total"},
      "accuracy": {"train", "validation", "test"},        # the fine-tuned model, fraction
      "n_rows": {...}, "n_errors": {...},
      "classifier": {"ece", "brier"},                     # test split, max softmax confidence
      "confidence": "...",                                # what the calibration numbers measure
      "methods": {variant: {
          "status": "ok" | "failed" | "not_applicable", "method", "params", "fit_split",
          "metrics": {"roc_auc", "pr_auc", "aurc", "accuracy", "n", "n_errors",
                      ["ece_score", "brier_score"]},
          "best_params": dict | null, "search_fallback": str | null,
          "fit_s", "score_s", "warnings": [...], ["error", "traceback"], ["reason"]}},
      "curves": {"coverage": [...], "risk": {variant: [...]},       # test split
                 "reliability": {"n_bins", "count", "confidence_sum", "correct_sum"}},
      "warnings": [...],                                  # e.g. a model predicting one class
      "error": null | {"stage", "type", "message", "traceback"}
    }

``classifier.ece`` / ``classifier.brier`` use the fine-tuned classifier's maximum softmax
probability as the confidence: they describe the classifier, not an uncertainty score, so
they are stored once per cell. Variants whose score is an error probability (SR, AdUE) also
record ``ece_score`` / ``brier_score`` with ``1 - U`` as the confidence. Non-finite numbers
(an undefined metric) are written as ``null``. Schema-1 cells (``ece`` / ``brier`` copied
into every variant's metrics, no ``data``) are still read: :func:`check_cell` upgrades them.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adue._atomic import atomic_write_json, json_safe
from adue.config import config_differences
from adue.features import Features
from adue.outputs import check_output_dir
from adue.provenance import git_commit, package_versions
from adue.variants import Variant, resolve_variants, unavailable_reason, variant_params

__all__ = [
    "SCHEMA_VERSION",
    "StaleRunError",
    "READABLE_SCHEMA_VERSIONS",
    "run_cell",
    "check_run_options",
    "cell_path",
    "cell_path_for",
    "default_run_dir",
    "check_cell",
    "read_cell",
    "cell_is_finished",
    "data_fingerprint",
    "COVERAGE_GRID",
    "RELIABILITY_BINS",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: Cell files this version reads (older ones are upgraded in memory by :func:`check_cell`).
READABLE_SCHEMA_VERSIONS = (1, 2)
#: Coverage points (fraction of test rows kept, most certain first) of the stored risk curves.
COVERAGE_GRID = np.round(np.arange(1, 101) / 100.0, 2)
#: Equal-width confidence bins of the stored reliability counts.
RELIABILITY_BINS = 15
CONFIDENCE_NOTE = (
    "classifier.ece and classifier.brier use the fine-tuned classifier's max softmax "
    "probability as confidence (they describe the classifier, not a score); "
    "ece_score / brier_score use 1 - U of the variant itself (SR and AdUE variants only)."
)
_SPLITS = ("train", "validation", "test")


# ------------------------------------------------------------------ pipeline hooks
# Thin indirections over the pipeline modules, imported lazily (they pull in transformers).
# Tests replace these names with fast fakes (monkeypatch); nothing else reads them.
def _finetune(cfg: Any, run_dir: Path, data_dir: str | None, progress: bool) -> Path:
    from adue.training import finetune

    return Path(finetune(cfg, run_dir, overwrite=False, data_dir=data_dir, progress=progress))


def _run_is_complete(run_dir: Path) -> bool:
    from adue.training import is_complete

    return bool(is_complete(run_dir))


def _read_run_config(run_dir: Path) -> dict:
    from adue.training import read_run_config

    cfg = read_run_config(run_dir)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def _extract(run_dir: Path, data_dir: str | None, progress: bool, device: str | None = None
             ) -> dict[str, Features]:
    from adue.extract import extract

    return extract(run_dir, splits=_SPLITS, data_dir=data_dir, progress=progress, device=device)


def _load_head(run_dir: Path) -> Any:
    from adue.extract import load_head

    return load_head(run_dir)


def _data_fingerprint(cfg: Any, data_dir: str | None) -> str:
    """:func:`adue.data.dataset_fingerprint` of the rows the run trains and extracts on."""
    from adue.data import dataset_fingerprint
    from adue.training.inputs import load_run_splits

    return dataset_fingerprint(load_run_splits(cfg, data_dir))


def data_fingerprint(cfg: Any, data_dir: str | os.PathLike | None = None) -> str:
    """sha256 (:func:`adue.data.dataset_fingerprint`) of the rows the run of ``cfg`` trains and
    extracts on: its dataset as :func:`adue.training.inputs.load_run_splits` loads it."""
    return _data_fingerprint(cfg, None if data_dir is None else str(data_dir))


def _stored_fingerprint(run_dir: Path) -> str | None:
    """The data fingerprint fine-tuning recorded in the run's ``dataset.json``, or None (a run
    trained before adue recorded it)."""
    try:
        data = json.loads((run_dir / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fp = data.get("fingerprint") if isinstance(data, dict) else None
    return fp if isinstance(fp, str) else None


# ------------------------------------------------------------------ paths & files
def _dataset_name(spec: str) -> str:
    from adue.data import dataset_name

    name = dataset_name(spec)
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(f"The dataset {spec!r} gives no usable name for a results folder ({name!r}).")
    return name


def cell_path(results_dir: str | os.PathLike, profile: str, backbone: str, dataset: str, seed: int) -> Path:
    """``RESULTS/<profile>/<backbone>/<dataset>/seed<S>.json`` (``dataset``: the name)."""
    return Path(results_dir) / str(profile) / str(backbone) / str(dataset) / f"seed{int(seed)}.json"


def default_run_dir(runs_dir: str | os.PathLike, profile: str, backbone: str, dataset: str, seed: int) -> Path:
    """``RUNS/<profile>/<backbone>/<dataset>/seed<S>``: the fine-tuned run folder of a cell."""
    return Path(runs_dir) / str(profile) / str(backbone) / str(dataset) / f"seed{int(seed)}"


def cell_path_for(results_dir: str | os.PathLike, cfg: Any) -> Path:
    """:func:`cell_path` of the cell ``cfg`` names (its dataset by :func:`adue.data.dataset_name`)."""
    return cell_path(results_dir, cfg.profile, cfg.backbone, _dataset_name(cfg.dataset), cfg.seed)


# ------------------------------------------------------------------ reading cells
def _classifier_from_variants(methods: dict) -> dict:
    """Schema 1: the classifier's ECE / Brier, copied into every variant, from the first ok one."""
    for entry in methods.values():
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if entry.get("status") == "ok" and metrics:
            return {"ece": metrics.get("ece"), "brier": metrics.get("brier")}
    return {"ece": None, "brier": None}


def check_cell(data: Any) -> tuple[dict | None, str | None]:
    """``(cell, None)`` for a usable cell record (upgraded to the current schema), else
    ``(None, reason)``. The one validator of cell files (the runner and the report use it)."""
    if not isinstance(data, dict):
        return None, "not a JSON object"
    version = data.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        return None, (f"schema_version {version!r} (this adue reads "
                      f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))})")
    cell = data.get("cell")
    if not isinstance(cell, dict) or not {"profile", "backbone", "dataset", "seed"} <= set(cell):
        return None, "no 'cell' with profile, backbone, dataset and seed"
    methods = data.get("methods")
    if data.get("status") == "complete" and not isinstance(methods, dict):
        return None, "no 'methods'"
    if version == 1:
        data = dict(data, schema_version=SCHEMA_VERSION, upgraded_from=1)
        data.setdefault("data", None)
        data["classifier"] = _classifier_from_variants(methods or {})
    return data, None


def read_cell(path: str | os.PathLike) -> dict:
    """Load a cell JSON (upgraded to the current schema); ``ValueError`` naming the file and the
    reason if it is not a usable cell file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Cannot read cell file {path}: {exc}") from exc
    data, reason = check_cell(raw)
    if reason is not None:
        raise ValueError(f"Cell file {path} is not a usable adue cell result: {reason}.")
    return data


def cell_is_finished(path: str | os.PathLike, config: Any = None,
                     variants: Iterable[str] | None = None, fingerprint: str | None = None) -> bool:
    """Whether ``path`` holds a complete cell (for ``config``, covering ``variants`` and made
    from data with ``fingerprint``, where given).

    A cell whose run failed (``"status": "failed"``), a corrupt file, a different resolved
    config, missing variants or other data all count as not finished (the grid redoes them).
    A cell that recorded no fingerprint (schema 1) is taken as made from the same data.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        data = read_cell(path)
    except ValueError:
        return False
    if data.get("status") != "complete":
        return False
    if config is not None and config_differences(data.get("config") or {}, config):
        return False
    if variants is not None and not set(variants) <= set(data.get("methods", {})):
        return False
    stored = (data.get("data") or {}).get("fingerprint")
    return fingerprint is None or stored is None or stored == fingerprint


# ------------------------------------------------------------------ options
def _check_search(search: Any) -> None:
    """The AdUE method's own check of a search grid (unknown keys, empty lists, bad values)."""
    from adue.methods import method_class

    method_class("adue")(search=search, init="random_linear")._grid()


def check_run_options(cfg: Any, methods: str | Iterable[str] | None = None,
                      adue_search: Any = None) -> tuple[list[Variant], str]:
    """Validate a cell's options before any work: ``(variants, device)``.

    Unknown variant names, a bad ``adue_search`` grid (when an AdUE variant runs) and a bad
    ``cfg.device`` raise ``ValueError``; the device is resolved (``"auto"``: CUDA if
    available, else CPU) and returned as a string, e.g. ``"cpu"`` or ``"cuda:0"``.
    """
    from adue.device import resolve_device

    variants = resolve_variants(methods)
    if adue_search is not None and any(v.method == "adue" for v in variants):
        _check_search(adue_search)
    device = resolve_device(getattr(cfg, "device", "auto"))
    return variants, str(device)


# ------------------------------------------------------------------ the cell
def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _error_record(stage: str, exc: BaseException) -> dict:
    return {
        "stage": stage,
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:],
    }


class StaleRunError(ValueError):
    """The run folder holds a run of another config or data, and replacing it was not asked for.

    Raised by :func:`run_cell` before any work, without writing the cell file (a previous
    result there stays as it was).
    """


@dataclass
class _Cell:
    """Everything the stages of one cell share; ``record`` is the JSON being built."""

    cfg: Any
    variants: list[Variant]
    out_path: Path
    run_dir: Path
    data_dir: str | None
    device: str
    search: Any
    progress: bool
    replace_stale_run: bool
    on_stage: Callable[[str], None] | None
    record: dict = field(default_factory=dict)
    current: str = "finetune"

    def label(self) -> str:
        c = self.record["cell"]
        return f"{c['profile']}/{c['backbone']}/{c['dataset']} seed {c['seed']}"

    def stage(self, name: str) -> None:
        logger.info("%s: %s", self.label(), name)
        if self.on_stage is not None:
            self.on_stage(name)


def _new_record(cfg: Any, name: str, run_dir: Path, device: str) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "cell": {"profile": cfg.profile, "backbone": cfg.backbone, "dataset": name,
                 "seed": int(cfg.seed)},
        "config": cfg.to_dict(),
        "data": {"spec": cfg.dataset, "name": name, "fingerprint": None},
        "run_dir": str(run_dir),
        "finetune_reused": None,
        "device": device,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                 "torch_threads": _torch_threads()},  # CPU results depend on it (reductions)
        "started_at": _now(),
        "finished_at": None,
        "timings_s": {},
        "accuracy": {},
        "n_rows": {},
        "n_errors": {},
        "classifier": {},
        "confidence": CONFIDENCE_NOTE,
        "methods": {},
        "curves": None,
        "warnings": [],
        "error": None,
    }


def _existing_config(run_dir: Path) -> dict | None:
    """The resolved config of the run in ``run_dir`` (finished or not), or None if none."""
    if not run_dir.is_dir():
        return None
    try:
        return _read_run_config(run_dir)
    except (OSError, ValueError, TypeError):
        return None


def _stale_reasons(cell: _Cell, fingerprint: str) -> list[str]:
    """Why the run folder's run does not fit this cell (another config, other data), if so."""
    reasons = []
    old = _existing_config(cell.run_dir)
    if old is not None and (diff := sorted(config_differences(old, cell.cfg))):
        reasons.append(f"a different config (differs in {diff})")
    if old is not None and _run_is_complete(cell.run_dir):
        stored = _stored_fingerprint(cell.run_dir)
        if stored is None:
            logger.warning("%s: run %s records no data fingerprint (trained before adue checked "
                           "it); cannot tell whether its data changed", cell.label(), cell.run_dir)
        elif stored != fingerprint:
            reasons.append(f"other data (dataset fingerprint {stored[:12]}... there, "
                           f"{fingerprint[:12]}... now: the data changed since it was trained)")
    return reasons


def _move_stale_run(cell: _Cell, reasons: list[str]) -> None:
    run_dir = cell.run_dir
    if not cell.replace_stale_run:
        raise StaleRunError(
            f"Run folder {run_dir} holds a run with {' and '.join(reasons)}. Choose another runs "
            "folder, delete that one, or replace it (`adue run --replace-run`, "
            "run_cell(replace_stale_run=True); the grid does this): it is moved aside and the "
            "cell trained anew."
        )
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(run_dir, aside)
    logger.warning("%s: run folder %s had %s; moved it to %s",
                   cell.label(), run_dir, " and ".join(reasons), aside)
    cell.record["warnings"].append(f"previous run folder with {' and '.join(reasons)} moved to {aside}")


def _stage_finetune(cell: _Cell) -> None:
    """Reuse the finished run of the same config and data, or fine-tune (moving a stale one aside)."""
    cell.stage("finetune")
    t0 = time.perf_counter()
    fingerprint = _data_fingerprint(cell.cfg, cell.data_dir)
    cell.record["data"]["fingerprint"] = fingerprint
    reasons = _stale_reasons(cell, fingerprint)
    if reasons:
        _move_stale_run(cell, reasons)
    reused = cell.run_dir.exists() and _run_is_complete(cell.run_dir)
    if reused:
        logger.info("%s: reusing finished run %s", cell.label(), cell.run_dir)
    else:
        cell.run_dir = _finetune(cell.cfg, cell.run_dir, cell.data_dir, cell.progress)
        cell.record["run_dir"] = str(cell.run_dir)
    cell.record["finetune_reused"] = reused
    cell.record["timings_s"]["finetune"] = time.perf_counter() - t0


def _stage_extract(cell: _Cell) -> tuple[dict[str, Features], Any]:
    """Features of every split (and the fine-tuned head, if a variant needs it)."""
    cell.current = "extract"
    cell.stage("extract")
    t0 = time.perf_counter()
    feats = _extract(cell.run_dir, cell.data_dir, cell.progress, cell.device)
    missing = set(_SPLITS) - set(feats)
    if missing:
        raise ValueError(f"Extraction of {cell.run_dir} returned no {sorted(missing)} split(s).")
    head = _load_head(cell.run_dir) if any(v.needs_head for v in cell.variants) else None
    cell.record["timings_s"]["extract"] = time.perf_counter() - t0
    for split in _SPLITS:
        f = feats[split]
        cell.record["accuracy"][split] = f.accuracy()
        cell.record["n_rows"][split] = f.n
        cell.record["n_errors"][split] = int(f.errors().sum())
        n_pred = int(np.unique(f.predictions()).size)
        if n_pred < f.num_classes:
            msg = (f"the fine-tuned model predicts only {n_pred} of {f.num_classes} classes on "
                   f"the {split} split (accuracy {f.accuracy():.3f})")
            logger.warning("%s: %s", cell.label(), msg)
            cell.record["warnings"].append(msg)
    return feats, head


def _fit_and_score(variant: Variant, method: Any, feats: dict[str, Features], errors: np.ndarray,
                   entry: dict) -> np.ndarray:
    """Fit ``method`` on ``variant``'s split, score the test split, fill ``entry``; returns U (n,)."""
    from adue.metrics import brier_score, evaluate, expected_calibration_error

    t0 = time.perf_counter()
    if variant.fit_on == "validation":
        method.fit(feats["validation"])
    else:
        method.fit(feats["train"], feats["validation"])
    entry["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    u = np.asarray(method.uncertainty(feats["test"]), dtype=np.float64)
    entry["score_s"] = time.perf_counter() - t0
    metrics = {k: v for k, v in evaluate(u, errors).items() if k not in ("ece", "brier")}
    if variant.score_is_probability:
        own = np.clip(1.0 - u, 0.0, 1.0)
        metrics["ece_score"] = expected_calibration_error(own, 1 - errors, RELIABILITY_BINS)
        metrics["brier_score"] = brier_score(own, 1 - errors)
    entry["metrics"] = metrics
    if variant.searched:
        entry["best_params"] = getattr(method, "best_params_", None)
        entry["search_fallback"] = getattr(method, "search_fallback_", None)
    return u


def _evaluate_variant(cell: _Cell, variant: Variant, feats: dict[str, Features], head: Any,
                      errors: np.ndarray) -> tuple[dict, np.ndarray | None]:
    """Fit one variant, score the test split; returns (entry, test uncertainty or None)."""
    from adue.methods import get_method

    params = variant_params(variant, seed=int(cell.cfg.seed), head=head, search=cell.search,
                            device=cell.device)
    entry: dict[str, Any] = {
        "status": "ok", "method": variant.method,
        "params": {k: v for k, v in params.items() if k != "head"},
        "fit_split": variant.fit_on, "metrics": None, "best_params": None,
        "search_fallback": None, "warnings": [],
    }
    u = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            u = _fit_and_score(variant, get_method(variant.method, **params), feats, errors, entry)
        except Exception as exc:  # one variant failing must not stop the others
            logger.warning("variant %s failed: %s: %s", variant.name, type(exc).__name__, exc)
            entry["status"] = "failed"
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = _error_record("methods", exc)["traceback"]
    for w in caught:
        msg = f"{w.category.__name__}: {w.message}"
        if msg not in entry["warnings"]:
            entry["warnings"].append(msg)
            logger.warning("variant %s: %s", variant.name, msg)
    return entry, u


def _stage_methods(cell: _Cell, feats: dict[str, Features], head: Any) -> None:
    """Every variant on the test split, the classifier's calibration, the stored curves."""
    from adue.metrics import (
        brier_score,
        expected_calibration_error,
        reliability_counts,
        risk_at_coverage,
    )

    cell.current = "methods"
    record = cell.record
    errors = feats["test"].errors()
    confidence = feats["test"].probabilities().max(axis=1)
    record["classifier"] = {
        "ece": expected_calibration_error(confidence, 1 - errors, RELIABILITY_BINS),
        "brier": brier_score(confidence, 1 - errors),
    }
    t0 = time.perf_counter()
    risks: dict[str, list[float]] = {}
    for variant in cell.variants:
        cell.stage(f"methods:{variant.name}")
        reason = unavailable_reason(variant, head)  # e.g. an SN variant on a single-Linear head
        if reason is not None:
            logger.info("%s: variant %s not applicable: %s", cell.label(), variant.name, reason)
            record["methods"][variant.name] = {"status": "not_applicable", "method": variant.method,
                                               "fit_split": variant.fit_on, "reason": reason}
            continue
        entry, u = _evaluate_variant(cell, variant, feats, head, errors)
        record["methods"][variant.name] = entry
        if u is not None:
            risks[variant.name] = np.round(risk_at_coverage(u, errors, COVERAGE_GRID), 5).tolist()
    record["timings_s"]["methods"] = time.perf_counter() - t0
    record["curves"] = {
        "coverage": COVERAGE_GRID.tolist(),
        "risk": risks,
        "reliability": reliability_counts(confidence, 1 - errors, RELIABILITY_BINS),
    }


def _prepare(cfg: Any, results_dir: str | os.PathLike, runs_dir: Any, run_dir: Any,
             data_dir: Any, methods: Any, adue_search: Any, progress: bool,
             replace_stale_run: bool, on_stage: Callable[[str], None] | None) -> _Cell:
    """Check every option and the output folder, then lay out the cell (no work done yet)."""
    variants, device = check_run_options(cfg, methods, adue_search)
    name = _dataset_name(cfg.dataset)
    results_dir = check_output_dir(results_dir, "results")
    if run_dir is None:
        root = Path(runs_dir) if runs_dir is not None else results_dir.resolve().parent / "runs"
        run_dir = default_run_dir(root, cfg.profile, cfg.backbone, name, cfg.seed)
    run_dir = Path(run_dir)
    cell = _Cell(
        cfg=cfg, variants=variants,
        out_path=cell_path(results_dir, cfg.profile, cfg.backbone, name, cfg.seed),
        run_dir=run_dir, data_dir=None if data_dir is None else str(data_dir), device=device,
        search=adue_search, progress=progress, replace_stale_run=replace_stale_run,
        on_stage=on_stage,
    )
    cell.record = _new_record(cfg, name, run_dir, device)
    return cell


def _write(cell: _Cell, t_total: float) -> dict:
    cell.record["timings_s"]["total"] = time.perf_counter() - t_total
    cell.record["finished_at"] = _now()
    cell.stage("write")
    record = json_safe(cell.record)
    atomic_write_json(cell.out_path, record, indent=1)
    return record


def run_cell(
    cfg: Any,
    results_dir: str | os.PathLike,
    *,
    runs_dir: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    methods: str | Iterable[str] | None = None,
    adue_search: Any = None,
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
    raise_on_error: bool = True,
    replace_stale_run: bool = False,
) -> dict:
    """Run one cell and write its JSON; return the record written.

    Parameters
    ----------
    cfg : adue.config.RunConfig
        Resolved run configuration (its ``profile``, ``backbone``, ``dataset`` and ``seed``
        name the cell; ``device`` where AdUE trains).
    results_dir : path
        Root of the cell files: the record goes to :func:`cell_path_for`. Checked (created,
        writable) before any work.
    runs_dir : path, optional
        Root of the fine-tuned run folders (:func:`default_run_dir`); default ``runs`` beside
        ``results_dir``. Ignored if ``run_dir`` is given.
    data_dir : path, optional
        Datasets folder passed to the pipeline (see :func:`adue.data.resolve_data_dir`).
    methods : str or list of str, optional
        Subset of variant names (default: all, see :mod:`adue.variants`).
    adue_search : None, "paper" or dict
        Replacement for the AdUE variants' hyper-parameter grid (default: the paper's grid).
    on_stage : callable, optional
        Called with each stage name (``"finetune"``, ``"extract"``, ``"methods:<variant>"``,
        ``"write"``) as it starts.
    replace_stale_run : bool
        If the run folder holds a run (finished or not) with another resolved config, or a
        finished run trained on other data (its fingerprint differs): False raises
        :class:`StaleRunError` (a ``ValueError``; the cell file is left as it was); True moves it aside to ``<run_dir>.replaced-<time>`` and trains anew
        (the grid does this, so that a changed profile or dataset retrains its cells).
    raise_on_error : bool
        If the run itself fails (fine-tuning or extraction), the cell file records the error
        with ``"status": "failed"``; the exception is then re-raised when True.

    Bad options (variant names, the search grid, the device, an unwritable ``results_dir``)
    raise before any work and write nothing.
    """
    cell = _prepare(cfg, results_dir, runs_dir, run_dir, data_dir, methods, adue_search,
                    progress, replace_stale_run, on_stage)
    t_total = time.perf_counter()
    try:
        _stage_finetune(cell)
        feats, head = _stage_extract(cell)
        _stage_methods(cell, feats, head)
        cell.record["status"] = "complete"
    except StaleRunError:
        raise  # refused before any work: nothing written, a previous cell file stays
    except Exception as exc:
        logger.error("%s failed in %s: %s: %s", cell.label(), cell.current, type(exc).__name__, exc)
        cell.record["status"] = "failed"
        cell.record["error"] = _error_record(cell.current, exc)
        record = _write(cell, t_total)
        if raise_on_error:
            raise
        return record
    return _write(cell, t_total)
