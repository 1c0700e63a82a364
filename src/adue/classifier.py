"""``UncertainClassifier``: a trained classifier + a fitted uncertainty method + an abstention rule.

>>> clf = UncertainClassifier.fit("my-adapter/", "sst2", target_risk=0.05)  # doctest: +SKIP
>>> clf.save("bundle/")                                                       # doctest: +SKIP
>>> UncertainClassifier.load("bundle/").predict(["a fine film"])              # doctest: +SKIP
[{'label': 'positive', 'label_id': 1, 'score': 0.97, 'probabilities': {...},
  'uncertainty': 0.03, 'abstain': False}]

Which rows fit what (recorded in ``bundle.json`` under ``calibration``):

- ``fit_split="validation"`` (default): the classifier did not train on these rows. They are
  split at random, stratified by (label, classifier error), with ``seed``, into *method rows*
  (fraction ``1 - calibration_fraction``), on which the uncertainty method is fitted, and
  *calibration rows*, on which the abstention threshold is chosen; neither the classifier nor
  the method saw the calibration rows.
- ``fit_split="train"`` (the paper's protocol): the method is fitted on the training rows
  and the threshold is calibrated on the whole validation split.

When the method rows hold no misclassified row (or only misclassified rows), no method can
learn which predictions are wrong: a warning says so, the softmax response ``sr``
(``1 - max probability``, nothing to fit) is used instead, and ``bundle.json`` records it
(``method.requested``, ``method.fallback``). Too few calibration rows for ``target_risk`` is
an error giving the minimum; when no threshold meets it the rule abstains on all inputs.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adue._validation import check_in, check_number, param_error
from adue.features import Features
from adue.selective import SelectiveThreshold, coverage_threshold, no_threshold, sgr_threshold

__all__ = ["UncertainClassifier", "DEFAULT_ADUE_PARAMS"]

logger = logging.getLogger(__name__)

#: ``method="adue"`` defaults: the paper's 144-config grid, chosen by 5-fold CV on the method rows.
DEFAULT_ADUE_PARAMS: dict[str, Any] = {"search": "paper", "search_cv": 5}
_OWNER = "UncertainClassifier.fit"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) and not hasattr(texts, "__iter__"):
        raise TypeError(f"texts must be a string or a list of strings. Got {type(texts).__name__} instead.")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(
            f"texts must hold only strings. Got {type(texts[bad[0]]).__name__} at position {bad[0]} instead."
        )
    return texts


def _check_rule(target_risk: Any, delta: Any, coverage: Any) -> None:
    if target_risk is not None and coverage is not None:
        raise ValueError(
            "Pass either 'target_risk' (with 'delta': a guaranteed risk) or 'coverage' (a fixed "
            "share kept, no guarantee), not both."
        )
    if target_risk is not None:
        check_number("target_risk", _OWNER, target_risk, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        check_number("delta", _OWNER, delta, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    if coverage is not None:
        check_number("coverage", _OWNER, coverage, low=0.0, high=1.0, low_inclusive=False)


def _select(u: np.ndarray, e: np.ndarray, target_risk, delta, coverage) -> SelectiveThreshold:
    if target_risk is not None:
        rule = sgr_threshold(u, e, target_risk=target_risk, delta=delta)
    elif coverage is not None:
        rule = coverage_threshold(u, e, coverage)
    else:
        rule = no_threshold(u, e)
    if rule.abstain_all:
        warnings.warn(rule.message, UserWarning, stacklevel=3)
    logger.info("%s", rule.message)
    return rule


def _split_rows(errors: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(method_idx, calibration_idx): a seeded split stratified by (label, error) cells."""
    rng = np.random.default_rng(seed)
    strata = labels.astype(np.int64) * 2 + errors.astype(np.int64)
    cal: list[np.ndarray] = []
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        cal.append(idx[: int(round(fraction * idx.size))])
    cal_idx = np.sort(np.concatenate(cal))
    method_idx = np.setdiff1d(np.arange(errors.size), cal_idx)
    return method_idx, cal_idx


def _build_method(name: str, params: dict[str, Any] | None, loaded: Any, device: Any) -> Any:
    from adue.methods import get_method, method_class

    params = dict(params or {})
    if name == "adue":
        defaults = dict(DEFAULT_ADUE_PARAMS)
        if "search" in params and params["search"] is None:  # one config: no CV selection
            defaults.pop("search_cv")
        params = {**defaults, **params}
    if "head" in method_class(name)._param_names() and "head" not in params:
        from adue.architectures import classifier_head

        params["head"] = classifier_head(loaded.model)
    if "device" in method_class(name)._param_names() and "device" not in params and device is not None:
        from adue.device import resolve_device

        params["device"] = str(resolve_device(device))  # "auto" -> the concrete device
    return get_method(name, **params)


def _fit_method(method: Any, feats: Features, name: str) -> tuple[Any, str | None]:
    """Fit ``method`` on ``feats``; with no (or only) errors there, fall back to ``sr``."""
    n_err = int(feats.errors().sum())
    if 0 < n_err < feats.n or name == "sr":
        return method.fit(feats), None
    from adue.methods import get_method

    why = (
        f"The method rows ({feats.n}) have {'no misclassified row' if n_err == 0 else 'only misclassified rows'}: "
        f"{name!r} cannot learn which predictions are wrong, so the softmax response ('sr', 1 - max "
        "probability, nothing to fit) is used instead. Use a split with errors (e.g. --fit-split "
        "validation on held-out rows) to fit the chosen method."
    )
    warnings.warn(why, UserWarning, stacklevel=3)
    return get_method("sr").fit(feats), why


def _public_params(method: Any) -> dict[str, Any]:
    """JSON-able constructor params (modules such as the head left out)."""
    out = {}
    for k, v in method.get_params(deep=False).items():
        if v is None or isinstance(v, (bool, int, float, str)):
            out[k] = v
        elif isinstance(v, (list, tuple, dict)):
            out[k] = v if isinstance(v, dict) else list(v)
        else:
            out[k] = f"<{type(v).__name__}>"
    return out


def _split_rows_of(ds: Any, split: str, mapping: list[int]) -> tuple[list[str], np.ndarray]:
    """Texts and labels (mapped to the model's class ids) of one dataset split."""
    part = ds[split]
    labels = np.asarray(mapping, dtype=np.int64)[np.asarray(part["label"], dtype=np.int64)]
    return list(part["text"]), labels


class UncertainClassifier:
    """A classifier that also says how likely each prediction is wrong, and when to abstain.

    Build with :meth:`fit` or :meth:`load`; never construct directly unless you hold the parts:
    ``loaded`` (:class:`adue.models.LoadedClassifier`), a fitted ``method``, the abstention
    ``rule`` (:class:`adue.selective.SelectiveThreshold`) and the ``manifest`` dict.
    """

    def __init__(self, loaded: Any, method: Any, rule: SelectiveThreshold, manifest: dict[str, Any], *,
                 batch_size: int = 32, device: Any = None) -> None:
        self.loaded = loaded
        self.method = method
        self.rule = rule
        self.manifest = manifest
        self.batch_size = batch_size
        self.device = device

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls,
        model: str | os.PathLike,
        data: str | os.PathLike,
        *,
        base: str | None = None,
        method: str = "adue",
        method_params: dict[str, Any] | None = None,
        fit_split: str = "validation",
        target_risk: float | None = None,
        delta: float = 0.05,
        coverage: float | None = None,
        calibration_fraction: float = 0.5,
        data_dir: str | os.PathLike | None = None,
        text_column: str = "text",
        label_column: str = "label",
        max_rows: int | None = None,
        batch_size: int = 32,
        device: Any = None,
        seed: int = 0,
        trust_remote_code: bool = False,
        revision: str | None = None,
        progress: bool = False,
    ) -> UncertainClassifier:
        """Load ``model``, fit ``method`` and the abstention rule on ``data`` (module docstring).

        ``target_risk`` + ``delta``: SGR threshold (risk <= bound <= target with probability
        >= 1 - delta); ``coverage``: keep that share of calibration rows (no guarantee); neither:
        never abstain. ``max_rows`` caps the fit split (and the validation split used for
        calibration with ``fit_split="train"``) by a stratified draw.
        """
        from adue.data import dataset_fingerprint, dataset_name, load_dataset
        from adue.models import load_classifier, match_labels

        check_in("fit_split", _OWNER, fit_split, ("validation", "train"))
        _check_rule(target_risk, delta, coverage)
        check_number("calibration_fraction", _OWNER, calibration_fraction, low=0.0, high=1.0,
                     low_inclusive=False, high_inclusive=False)
        check_number("batch_size", _OWNER, batch_size, low=1, integer=True)
        if not isinstance(method, str):
            raise param_error("method", _OWNER, "a registered method name", method)
        loaded = load_classifier(model, base=base, device=device, trust_remote_code=trust_remote_code,
                                 revision=revision)
        caps = {"max_train": max_rows, "max_val": max_rows} if max_rows else {}
        ds = load_dataset(data, data_dir, text_column=text_column, label_column=label_column, **caps)
        data_names = list(ds["train"].features["label"].names)
        mapping = match_labels(loaded.label_names, data_names)
        clf = cls(loaded, None, None, {}, batch_size=batch_size, device=device)  # type: ignore[arg-type]
        feats = {s: clf.features(*_split_rows_of(ds, s, mapping), progress=progress)
                 for s in dict.fromkeys([fit_split, "validation"])}
        if fit_split == "validation":
            fit = feats["validation"]
            m_idx, c_idx = _split_rows(fit.errors(), fit.labels, calibration_fraction, seed)
            method_feats, cal_feats = fit.subset(m_idx), fit.subset(c_idx)
            rows = {"method_rows": m_idx.tolist(), "calibration_rows": c_idx.tolist(),
                    "rule": f"validation split into method / calibration rows, stratified by (label, error), "
                            f"calibration_fraction={calibration_fraction}, seed={seed}"}
        else:
            method_feats, cal_feats = feats["train"], feats["validation"]
            rows = {"method_rows": "all train rows", "calibration_rows": "all validation rows",
                    "rule": "method fitted on train (paper protocol); threshold calibrated on validation"}
        fitted, fallback = _fit_method(_build_method(method, method_params, loaded, device), method_feats, method)
        u = fitted.uncertainty(cal_feats)
        rule = _select(u, cal_feats.errors(), target_risk, delta, coverage)
        clf.method, clf.rule = fitted, rule
        clf.manifest = clf._manifest(method, fallback, fit_split, rows, method_feats, cal_feats,
                                     data={"name": dataset_name(data), "spec": os.fspath(data),
                                           "fingerprint": dataset_fingerprint(ds), "label_names": data_names,
                                           "label_mapping": list(mapping)})
        return clf

    def _manifest(self, requested: str, fallback: str | None, fit_split: str, rows: dict, method_feats: Features,
                  cal_feats: Features, data: dict) -> dict[str, Any]:
        from adue import __version__
        from adue.architectures import model_type, pooling_kind
        from adue.provenance import git_commit, package_versions

        tok = self.loaded.tokenizer
        return {
            "created": _now(),
            "adue_version": __version__,
            "package_versions": package_versions(),
            "git_commit": git_commit(),
            "method": {"name": self.method.name, "requested": requested, "fallback": fallback,
                       "params": _public_params(self.method)},
            "labels": list(self.loaded.label_names),
            "model": {"reference": self.loaded.reference, "model_type": model_type(self.loaded.model)},
            "tokenizer": {"max_length": int(self.loaded.max_length), "padding_side": tok.padding_side,
                          "truncation": True, "name_or_path": getattr(tok, "name_or_path", None)},
            "pooling": pooling_kind(self.loaded.model),
            "selection": self.rule.to_dict(),
            "calibration": {"fit_split": fit_split, **rows, "n_method_rows": method_feats.n,
                            "n_method_errors": int(method_feats.errors().sum()),
                            "n_calibration_rows": cal_feats.n,
                            "n_calibration_errors": int(cal_feats.errors().sum())},
            "data": data,
        }

    # ----------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike, *, copy_model: bool = False, overwrite: bool = False) -> Path:
        """Write the bundle folder (see :mod:`adue.bundle`); ``copy_model`` puts the model inside."""
        from adue.bundle import write_bundle

        return write_bundle(path, self.manifest, self.method, loaded=self.loaded, copy_model=copy_model,
                            overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: Any = None, batch_size: int = 32) -> UncertainClassifier:
        """Load a bundle; the method file is hash-checked before it is read, the model files against
        the hashes load_classifier computed from the files it read (one pass over the weights)."""
        from adue.bundle import (
            BundleError,
            check_model_files,
            load_method_file,
            model_source,
            read_manifest,
        )
        from adue.models import load_classifier

        manifest = read_manifest(path)
        method = load_method_file(path, manifest)
        ref, kwargs = model_source(path, manifest)
        loaded = load_classifier(ref, device=device, **kwargs)
        check_model_files(path, manifest, loaded.reference)  # the files as loaded vs as recorded
        if list(loaded.label_names) != list(manifest["labels"]):
            raise BundleError(
                f"The model loaded for bundle {path} has labels {loaded.label_names}, the bundle "
                f"{manifest['labels']}. Refit the bundle for this model."
            )
        loaded.max_length = int(manifest["tokenizer"]["max_length"])
        rule = SelectiveThreshold.from_dict(manifest["selection"])
        return cls(loaded, method, rule, manifest, batch_size=batch_size, device=device)

    # --------------------------------------------------------------- predict
    def features(self, texts: Sequence[str], labels: np.ndarray | None = None, *, progress: bool = False) -> Features:
        """Features (z, logits[, labels]) of ``texts``: one forward pass, batched by length."""
        from adue.inference import extract_features

        z, logits = extract_features(self.loaded.model, self.loaded.tokenizer, list(texts),
                                     max_length=self.loaded.max_length, batch_size=self.batch_size,
                                     device=None, progress=progress)  # the model sits on its device
        return Features(z, logits, labels)

    def predict_arrays(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probabilities (n, C), uncertainty (n,), abstain (n,) bool)`` for ``texts``."""
        feats = self.features(texts)
        u = self.method.uncertainty(feats)
        return feats.probabilities(), u, self.rule.abstain(u)

    def predict(self, texts: str | Sequence[str], *, top_k: int | None = None) -> list[dict[str, Any]]:
        """One dict per text: ``label``, ``label_id`` (argmax), ``score`` (its probability),
        ``probabilities`` ({label: p}, all classes or the ``top_k`` largest), ``uncertainty``
        (higher = more likely wrong) and ``abstain`` (``uncertainty > threshold``)."""
        texts = _check_texts(texts)
        if top_k is not None:
            check_number("top_k", "UncertainClassifier.predict", top_k, low=1, integer=True)
        if not texts:
            return []
        probs, u, abstain = self.predict_arrays(texts)
        return self.records(probs, u, abstain, top_k=top_k)

    def records(self, probs: np.ndarray, u: np.ndarray, abstain: np.ndarray, *, top_k: int | None = None) -> list[dict]:
        """The :meth:`predict` dicts from its arrays."""
        names = self.loaded.label_names
        ids = probs.argmax(axis=1)
        k = probs.shape[1] if top_k is None else min(top_k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k] if top_k is not None else None
        out = []
        for i, c in enumerate(ids.tolist()):
            cols = range(probs.shape[1]) if order is None else order[i].tolist()
            out.append({"label": names[c], "label_id": int(c), "score": float(probs[i, c]),
                        "probabilities": {names[j]: float(probs[i, j]) for j in cols},
                        "uncertainty": float(u[i]), "abstain": bool(abstain[i])})
        return out

    def __call__(self, inputs: str | Sequence[str], **kwargs: Any) -> list[dict[str, Any]]:
        """Like ``transformers.pipeline("text-classification")``: ``[{"label", "score"}]`` per
        text (a list even for one string), plus ``uncertainty`` and ``abstain``."""
        recs = self.predict(inputs, **kwargs)
        return [{"label": r["label"], "score": r["score"], "uncertainty": r["uncertainty"],
                 "abstain": r["abstain"]} for r in recs]

    def evaluate(self, data: str | os.PathLike, *, split: str = "test", data_dir: str | os.PathLike | None = None,
                 text_column: str = "text", label_column: str = "label", progress: bool = False) -> dict[str, Any]:
        """Metrics on a labelled split: :func:`adue.metrics.evaluate` (uncertainty vs errors,
        max probability as confidence), plus coverage and selective risk at the bundle's
        threshold next to its bound, and the risk-coverage curve (``curve``: coverage, risk)."""
        from adue.data import load_dataset
        from adue.metrics import evaluate, risk_coverage_curve
        from adue.models import match_labels

        check_in("split", "UncertainClassifier.evaluate", split, ("train", "validation", "test"))
        ds = load_dataset(data, data_dir, text_column=text_column, label_column=label_column)
        mapping = match_labels(self.loaded.label_names, list(ds[split].features["label"].names))
        feats = self.features(*_split_rows_of(ds, split, mapping), progress=progress)
        u, e = self.method.uncertainty(feats), feats.errors()
        keep = ~self.rule.abstain(u)
        out: dict[str, Any] = {"split": split, **evaluate(u, e, feats.probabilities().max(axis=1))}
        out["selective"] = {
            "mode": self.rule.mode, "threshold": self.rule.threshold, "target_risk": self.rule.target_risk,
            "delta": self.rule.delta, "bound": self.rule.bound, "coverage": float(keep.mean()),
            "risk": float(e[keep].mean()) if keep.any() else None, "n_kept": int(keep.sum()),
            "calibration_coverage": self.rule.coverage, "calibration_risk": self.rule.risk,
        }
        cov, risk = risk_coverage_curve(u, e)
        out["curve"] = {"coverage": cov.tolist(), "risk": risk.tolist()}
        return out

    def info(self) -> dict[str, Any]:
        """JSON-able summary: model reference and hashes, method, labels, the rule and its bound."""
        m, r = self.manifest, self.rule
        return {
            "model": m["model"], "method": m["method"], "labels": m["labels"],
            "threshold": r.threshold, "abstain_all": r.abstain_all, "mode": r.mode,
            "guaranteed": r.guaranteed, "target_risk": r.target_risk, "delta": r.delta,
            "target_coverage": r.target_coverage, "bound": r.bound, "coverage": r.coverage,
            "calibration_risk": r.risk, "n_calibration": r.n_calibration,
            "calibration": {k: v for k, v in m["calibration"].items() if not k.endswith("_rows") or
                            not isinstance(v, list)},
            "format_version": m.get("format_version"), "created": m.get("created"),
        }
