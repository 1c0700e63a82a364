"""One cell of the experiment grid: fine-tune (or reuse), extract, score every variant, write JSON.

A *cell* is one (profile, backbone, dataset, seed). :func:`run_cell` writes one JSON file at
``RESULTS/<profile>/<backbone>/<dataset>/seed<S>.json`` (atomically: temp file + rename), so a
cell file is either absent, or complete, or records the failure of its run::

    {
      "schema_version": 1,
      "status": "complete" | "failed",
      "cell": {"profile", "backbone", "dataset", "seed"},
      "config": {...resolved RunConfig...},
      "run_dir": "...", "finetune_reused": bool,
      "versions": {"python", "adue", "torch", ...}, "git_commit": str | null,
      "started_at", "finished_at",                       # ISO 8601, UTC
      "timings_s": {"finetune", "extract", "methods", "total"},
      "accuracy": {"train", "validation", "test"},        # the fine-tuned model, fraction
      "n_rows": {...}, "n_errors": {...},
      "confidence": "...",                                # what ECE / Brier measure (see below)
      "methods": {variant: {
          "status": "ok" | "failed", "method", "params", "fit_split",
          "metrics": {"roc_auc", "pr_auc", "aurc", "ece", "brier", "accuracy",
                      ["ece_score", "brier_score"]},
          "best_params": dict | null, "search_fallback": str | null,
          "fit_s", "score_s", "warnings": [...], ["error", "traceback"]}},
      "curves": {"coverage": [...], "risk": {variant: [...]},       # test split
                 "reliability": {"n_bins", "count", "confidence_sum", "correct_sum"}},
      "warnings": [...],                                  # e.g. a model predicting one class
      "error": null | {"stage", "type", "message", "traceback"}
    }

``ece`` and ``brier`` use the fine-tuned classifier's maximum softmax probability as the
confidence for every variant: they describe the classifier, not the uncertainty score, and are
identical across variants. Variants whose score is an error probability (SR, AdUE) also record
``ece_score`` / ``brier_score`` with ``1 - U`` as the confidence. Non-finite numbers (an
undefined metric) are written as ``null``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import subprocess
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from adue._atomic import atomic_write_text
from adue.features import Features
from adue.variants import Variant, resolve_variants, variant_params

__all__ = [
    "SCHEMA_VERSION",
    "run_cell",
    "cell_path",
    "default_run_dir",
    "read_cell",
    "cell_is_finished",
    "write_json_atomic",
    "write_text_atomic",
    "find_data_dir",
    "COVERAGE_GRID",
    "RELIABILITY_BINS",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Coverage points (fraction of test rows kept, most certain first) of the stored risk curves.
COVERAGE_GRID = np.round(np.arange(1, 101) / 100.0, 2)
#: Equal-width confidence bins of the stored reliability counts.
RELIABILITY_BINS = 15
CONFIDENCE_NOTE = (
    "ece and brier use the fine-tuned classifier's max softmax probability as confidence for "
    "every variant (they describe the classifier and are identical across variants); "
    "ece_score / brier_score use 1 - U of the variant itself (SR and AdUE variants only)."
)
_VERSION_PACKAGES = (
    "adue",
    "torch",
    "transformers",
    "peft",
    "numpy",
    "scikit-learn",
    "scipy",
    "safetensors",
)
_METRIC_KEYS = ("roc_auc", "pr_auc", "aurc", "ece", "brier", "accuracy")


# ------------------------------------------------------------------ pipeline hooks
# Thin indirections over the pipeline modules, imported lazily (they pull in transformers).
# Tests replace these four names with fast fakes (monkeypatch); nothing else reads them.
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


def _existing_config(run_dir: Path) -> dict | None:
    """The resolved config of the run in ``run_dir`` (finished or not), or None if none."""
    if not run_dir.is_dir():
        return None
    try:
        return _read_run_config(run_dir)
    except (OSError, ValueError, TypeError):
        return None


def _extract(run_dir: Path, data_dir: str | None, progress: bool) -> dict[str, Features]:
    from adue.extract import extract

    return extract(run_dir, splits=("train", "validation", "test"), data_dir=data_dir, progress=progress)


def _load_head(run_dir: Path) -> Any:
    from adue.extract import load_head

    return load_head(run_dir)


# ------------------------------------------------------------------ paths & files
def cell_path(results_dir: str | os.PathLike, profile: str, backbone: str, dataset: str, seed: int) -> Path:
    """``RESULTS/<profile>/<backbone>/<dataset>/seed<S>.json``."""
    return Path(results_dir) / str(profile) / str(backbone) / str(dataset) / f"seed{int(seed)}.json"


def default_run_dir(runs_dir: str | os.PathLike, profile: str, backbone: str, dataset: str, seed: int) -> Path:
    """``RUNS/<profile>/<backbone>/<dataset>/seed<S>``: the fine-tuned run folder of a cell."""
    return Path(runs_dir) / str(profile) / str(backbone) / str(dataset) / f"seed{int(seed)}"


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    return atomic_write_text(path, text)


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`write_text_atomic`).

    Non-finite floats are written as ``null`` so that the file is strict JSON.
    """
    return write_text_atomic(json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n", path)


def read_cell(path: str | os.PathLike) -> dict:
    """Load a cell JSON; raises ``ValueError`` if it is not a valid cell file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Cannot read cell file {path}: {exc}") from exc
    if not isinstance(data, dict) or "schema_version" not in data or "cell" not in data:
        raise ValueError(f"Cell file {path} is not an adue cell result (no schema_version / cell).")
    if data["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"Cell file {path} has schema_version {data['schema_version']!r}; this adue reads "
            f"version {SCHEMA_VERSION}."
        )
    return data


def cell_is_finished(path: str | os.PathLike, config: dict | None = None,
                     variants: Iterable[str] | None = None) -> bool:
    """Whether ``path`` holds a complete cell (for ``config`` and covering ``variants`` if given).

    A cell whose run failed (``"status": "failed"``), a corrupt file, a different resolved
    config or missing variants all count as not finished (the grid redoes them).
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
    if config is not None and _normalise(data.get("config")) != _normalise(config):
        return False
    if variants is not None and not set(variants) <= set(data.get("methods", {})):
        return False
    return True


def find_data_dir(explicit: str | os.PathLike | None = None, start: str | os.PathLike | None = None) -> str | None:
    """The datasets folder: ``explicit``, else ``$ADUE_DATA_DIR``, else ``shared/data`` found
    in the current directory or one of its parents (``../shared/data`` seen from the repository
    root), else ``None`` (the data layer's own default).
    """
    if explicit:
        return str(explicit)
    env = os.environ.get("ADUE_DATA_DIR")
    if env:
        return env
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        cand = folder / "shared" / "data"
        if cand.is_dir():
            return str(cand)
    return None


# ------------------------------------------------------------------ provenance
def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages behind a result, plus Python's."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """``HEAD`` of the git checkout holding this package (``+dirty`` if modified), else ``None``."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        commit = head.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src, capture_output=True, text=True, timeout=20,
        )
        if dirty.returncode == 0 and dirty.stdout.strip():
            commit += "+dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return None


# ------------------------------------------------------------------ curves
def risk_at_coverage(uncertainty: np.ndarray, errors: np.ndarray,
                     coverage: np.ndarray = COVERAGE_GRID) -> np.ndarray:
    """Selective risk when keeping the ``coverage`` fraction of rows with the lowest uncertainty.

    ``risk(c) = E[#errors among the k = c * n most certain rows] / k``; rows tied in
    uncertainty enter in random order, so inside a tie group the expected error count grows
    linearly. Shape ``(len(coverage),)``.
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    n = u.size
    order = np.argsort(u, kind="stable")
    u_sorted, e_sorted = u[order], e[order]
    # group ends: last index of each run of equal uncertainty
    ends = np.flatnonzero(np.r_[u_sorted[1:] != u_sorted[:-1], True])
    counts = np.r_[0, ends + 1].astype(np.float64)
    cum_err = np.r_[0.0, np.cumsum(e_sorted)[ends]]
    k = np.maximum(np.asarray(coverage, dtype=np.float64) * n, 1.0)
    return np.interp(k, counts, cum_err) / k


def reliability_counts(confidence: np.ndarray, correct: np.ndarray, n_bins: int = RELIABILITY_BINS) -> dict:
    """Per-bin count, confidence sum and correct count over ``n_bins`` equal bins of [0, 1].

    Bin ``b`` holds ``b / n_bins < confidence <= (b + 1) / n_bins`` (confidence 0 goes to bin 0).
    Sums (not means) so that several seeds pool exactly.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return {
        "n_bins": int(n_bins),
        "count": np.bincount(idx, minlength=n_bins).astype(int).tolist(),
        "confidence_sum": np.bincount(idx, weights=conf, minlength=n_bins).tolist(),
        "correct_sum": np.bincount(idx, weights=corr, minlength=n_bins).tolist(),
    }


# ------------------------------------------------------------------ the cell
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def _normalise(obj: Any) -> Any:
    """JSON round trip, so that tuples/lists and numpy scalars compare equal."""
    return json.loads(json.dumps(_json_safe(obj), sort_keys=True))


def _cfg_dict(cfg: Any) -> dict:
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _error_record(stage: str, exc: BaseException) -> dict:
    return {
        "stage": stage,
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:],
    }


def _public_params(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != "head"}


def _evaluate_variant(variant: Variant, feats: dict[str, Features], head: Any, seed: int,
                      search: Any, device: str | None, confidence: np.ndarray,
                      errors: np.ndarray) -> tuple[dict, np.ndarray | None]:
    """Fit one variant, score the test split; returns (entry, test uncertainty or None)."""
    from adue.methods import get_method
    from adue.metrics import evaluate

    params = variant_params(variant, seed=seed, head=head, search=search, device=device)
    entry: dict[str, Any] = {
        "status": "ok",
        "method": variant.method,
        "params": _public_params(params),
        "fit_split": variant.fit_on,
        "metrics": None,
        "best_params": None,
        "search_fallback": None,
        "warnings": [],
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            method = get_method(variant.method, **params)
            t0 = time.perf_counter()
            if variant.fit_on == "validation":
                method.fit(feats["validation"])
            else:
                method.fit(feats["train"], feats["validation"])
            entry["fit_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            u = np.asarray(method.uncertainty(feats["test"]), dtype=np.float64)
            entry["score_s"] = time.perf_counter() - t0
            metrics = dict(evaluate(u, errors, confidence=confidence))
            if variant.score_is_probability:
                own = evaluate(u, errors, confidence=np.clip(1.0 - u, 0.0, 1.0))
                metrics["ece_score"] = own["ece"]
                metrics["brier_score"] = own["brier"]
            entry["metrics"] = metrics
            if variant.searched:
                entry["best_params"] = getattr(method, "best_params_", None)
                entry["search_fallback"] = getattr(method, "search_fallback_", None)
        except Exception as exc:  # one variant failing must not stop the others
            logger.warning("variant %s failed: %s: %s", variant.name, type(exc).__name__, exc)
            entry["status"] = "failed"
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)
            )[-4000:]
            u = None
    seen: list[str] = []
    for w in caught:
        msg = f"{w.category.__name__}: {w.message}"
        if msg not in seen:
            seen.append(msg)
            logger.warning("variant %s: %s", variant.name, msg)
    entry["warnings"] = seen
    return entry, u


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
        name the cell).
    results_dir : path
        Root of the cell files: the record goes to :func:`cell_path`.
    runs_dir : path, optional
        Root of the fine-tuned run folders (:func:`default_run_dir`); default ``runs`` beside
        ``results_dir``. Ignored if ``run_dir`` is given.
    data_dir : path, optional
        Datasets folder passed to the pipeline.
    methods : str or list of str, optional
        Subset of variant names (default: all, see :mod:`adue.variants`).
    adue_search : None, "paper" or dict
        Replacement for the AdUE variants' hyper-parameter grid (default: the paper's grid).
    on_stage : callable, optional
        Called with each stage name (``"finetune"``, ``"extract"``, ``"methods:<variant>"``,
        ``"write"``) as it starts.
    replace_stale_run : bool
        If the run folder holds a run (finished or not) with another resolved config: False
        raises ``ValueError``; True moves it aside to ``<run_dir>.replaced-<time>`` and trains
        anew (the grid does this, so that a changed profile retrains its cells).
    raise_on_error : bool
        If the run itself fails (fine-tuning or extraction), the cell file records the error
        with ``"status": "failed"``; the exception is then re-raised when True.
    """
    variants = resolve_variants(methods)
    profile = _cfg_get(cfg, "profile")
    backbone = _cfg_get(cfg, "backbone")
    dataset = _cfg_get(cfg, "dataset")
    seed = int(_cfg_get(cfg, "seed"))
    device = _cfg_get(cfg, "device")
    results_dir = Path(results_dir)
    out_path = cell_path(results_dir, profile, backbone, dataset, seed)
    if run_dir is None:
        root = Path(runs_dir) if runs_dir is not None else results_dir.resolve().parent / "runs"
        run_dir = default_run_dir(root, profile, backbone, dataset, seed)
    run_dir = Path(run_dir)
    data_dir = None if data_dir is None else str(data_dir)
    config = _cfg_dict(cfg)

    def stage(name: str) -> None:
        logger.info("%s/%s/%s seed %d: %s", profile, backbone, dataset, seed, name)
        if on_stage is not None:
            on_stage(name)

    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "cell": {"profile": profile, "backbone": backbone, "dataset": dataset, "seed": seed},
        "config": config,
        "run_dir": str(run_dir),
        "finetune_reused": None,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "started_at": _now(),
        "finished_at": None,
        "timings_s": {},
        "accuracy": {},
        "n_rows": {},
        "n_errors": {},
        "confidence": CONFIDENCE_NOTE,
        "methods": {},
        "curves": None,
        "warnings": [],
        "error": None,
    }
    t_total = time.perf_counter()
    current = "finetune"
    try:
        stage("finetune")
        t0 = time.perf_counter()
        reused = False
        old = _existing_config(run_dir)
        if old is not None and _normalise(old) != _normalise(config):
            diff = sorted(
                k for k in set(old) | set(config)
                if _normalise(old.get(k)) != _normalise(config.get(k))
            )
            if not replace_stale_run:
                raise ValueError(
                    f"Run folder {run_dir} holds a run with a different config (differs in "
                    f"{diff}). Choose another runs folder, delete that one, or let the grid "
                    "replace it (it moves such folders aside)."
                )
            aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(run_dir, aside)
            logger.warning("run folder %s had another config (differs in %s); moved it to %s",
                           run_dir, diff, aside)
            record["warnings"].append(f"previous run folder with another config moved to {aside}")
        if run_dir.exists() and _run_is_complete(run_dir):
            reused = True
            logger.info("reusing finished run %s", run_dir)
        else:
            run_dir = _finetune(cfg, run_dir, data_dir, progress)
            record["run_dir"] = str(run_dir)
        record["finetune_reused"] = reused
        record["timings_s"]["finetune"] = time.perf_counter() - t0

        current = "extract"
        stage("extract")
        t0 = time.perf_counter()
        feats = _extract(run_dir, data_dir, progress)
        missing = {"train", "validation", "test"} - set(feats)
        if missing:
            raise ValueError(f"Extraction of {run_dir} returned no {sorted(missing)} split(s).")
        head = _load_head(run_dir) if any(v.needs_head for v in variants) else None
        record["timings_s"]["extract"] = time.perf_counter() - t0
        for split in ("train", "validation", "test"):
            f = feats[split]
            record["accuracy"][split] = f.accuracy()
            record["n_rows"][split] = f.n
            record["n_errors"][split] = int(f.errors().sum())
            n_pred = int(np.unique(f.predictions()).size)
            if n_pred < f.num_classes:
                msg = (f"the fine-tuned model predicts only {n_pred} of {f.num_classes} classes on "
                       f"the {split} split (accuracy {f.accuracy():.3f})")
                logger.warning("%s/%s/%s seed %d: %s", profile, backbone, dataset, seed, msg)
                record["warnings"].append(msg)

        current = "methods"
        test = feats["test"]
        errors = test.errors()
        probs = test.probabilities()
        confidence = probs.max(axis=1)
        t_methods = time.perf_counter()
        risks: dict[str, list[float]] = {}
        for variant in variants:
            stage(f"methods:{variant.name}")
            entry, u = _evaluate_variant(
                variant, feats, head, seed, adue_search, device, confidence, errors
            )
            record["methods"][variant.name] = entry
            if u is not None:
                risks[variant.name] = np.round(risk_at_coverage(u, errors), 5).tolist()
        record["timings_s"]["methods"] = time.perf_counter() - t_methods
        record["curves"] = {
            "coverage": COVERAGE_GRID.tolist(),
            "risk": risks,
            "reliability": reliability_counts(confidence, 1 - errors),
        }
        record["status"] = "complete"
    except Exception as exc:
        logger.error("%s/%s/%s seed %d failed in %s: %s: %s",
                     profile, backbone, dataset, seed, current, type(exc).__name__, exc)
        record["status"] = "failed"
        record["error"] = _error_record(current, exc)
        record["timings_s"]["total"] = time.perf_counter() - t_total
        record["finished_at"] = _now()
        stage("write")
        write_json_atomic(record, out_path)
        if raise_on_error:
            raise
        return _json_safe(record)
    record["timings_s"]["total"] = time.perf_counter() - t_total
    record["finished_at"] = _now()
    stage("write")
    write_json_atomic(record, out_path)
    return _json_safe(record)
