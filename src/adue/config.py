"""Run configuration: one validated, frozen :class:`RunConfig` per fine-tuning run.

A configuration is resolved in layers, later ones winning:

1. the profile's ``settings`` (``profiles.json`` beside this module; a profile may ``extend``
   another one and inherits its settings),
2. the profile's ``per_dataset`` overrides for the dataset (e.g. ``max_length`` 256 for
   20 Newsgroups under ``cpu``),
3. the profile's ``per_backbone`` caps for the (backbone preset, dataset) pair, each with the
   reason it exists (e.g. SmolLM2's 20 Newsgroups rows and length under ``cpu``: a budget
   cap, not a change of recipe; :func:`backbone_caps` lists them, the report prints them),
4. the caller's keyword overrides (every CLI flag); ``None`` means "not given".

Every family (encoders and decoders) shares one recipe per profile.

Profiles are data, kept in one place: ``src/adue/profiles.json``. ``paper`` is the paper's
protocol exactly; ``cpu`` and ``quick`` are what two CPU cores afford.

>>> cfg = resolve_config(dataset="sst2", backbone="minilm", seed=1, profile="cpu")
>>> cfg.max_train, cfg.epochs, cfg.batch_size
(2000, 3, 32)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from adue._atomic import atomic_write_text
from adue._validation import check_number, param_error
from adue.device import check_device_setting

__all__ = [
    "RunConfig",
    "resolve_config",
    "list_profiles",
    "PROFILES",
    "profile_description",
    "config_differences",
    "backbone_caps",
    "EXECUTION_FIELDS",
    "FIELD_HELP",
]

logger = logging.getLogger(__name__)

_OWNER = "RunConfig"

#: Keys a profile in profiles.json may have.
_PROFILE_KEYS = frozenset(
    {"description", "extends", "settings", "per_dataset", "per_backbone", "notes"}
)

#: Keys of one ``per_backbone`` entry (``{backbone: {dataset: entry}}``).
_CAP_KEYS = frozenset({"settings", "why"})


def _check_caps(name: str, per_backbone: Any) -> None:
    """Each ``per_backbone[backbone][dataset]`` entry is ``{"settings": {...}, "why": str}``."""
    if not isinstance(per_backbone, dict):
        raise ValueError(f"profiles.json: 'per_backbone' of profile {name!r} must be an object.")
    for backbone, per_dataset in per_backbone.items():
        if not isinstance(per_dataset, dict):
            raise ValueError(f"profiles.json: per_backbone[{backbone!r}] of profile {name!r} "
                             "must map dataset names to entries.")
        for dataset, entry in per_dataset.items():
            where = f"per_backbone[{backbone!r}][{dataset!r}] of profile {name!r}"
            if not isinstance(entry, dict) or set(entry) != _CAP_KEYS:
                raise ValueError(f"profiles.json: {where} must have exactly the keys "
                                 f"{sorted(_CAP_KEYS)}; got {entry!r}.")
            if not isinstance(entry["why"], str) or not entry["why"].strip():
                raise ValueError(f"profiles.json: {where} needs a non-empty 'why'.")


def _load_profiles() -> dict[str, dict[str, Any]]:
    text = resources.files("adue").joinpath("profiles.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        if name in chain:
            raise ValueError(f"profiles.json: circular 'extends' chain {' -> '.join(chain + (name,))}.")
        entry = raw[name]
        unknown = sorted(set(entry) - _PROFILE_KEYS)
        if unknown:
            raise ValueError(
                f"profiles.json: profile {name!r} has unknown key(s) {unknown}; "
                f"allowed: {sorted(_PROFILE_KEYS)}."
            )
        parent = entry.get("extends")
        if parent is not None:
            if parent not in raw:
                raise ValueError(f"profiles.json: profile {name!r} extends unknown profile {parent!r}.")
            base = resolve(parent, chain + (name,))
        else:
            base = {"settings": {}, "per_dataset": {}, "per_backbone": {}}
        per_dataset = {k: dict(v) for k, v in base["per_dataset"].items()}
        for k, v in entry.get("per_dataset", {}).items():
            per_dataset.setdefault(k, {}).update(v)
        _check_caps(name, entry.get("per_backbone", {}))
        per_backbone = {b: dict(v) for b, v in base["per_backbone"].items()}
        for b, v in entry.get("per_backbone", {}).items():
            per_backbone.setdefault(b, {}).update(v)
        out = {
            "description": entry.get("description", ""),
            "settings": {**base["settings"], **entry.get("settings", {})},
            "per_dataset": per_dataset,
            "per_backbone": per_backbone,
        }
        resolved[name] = out
        return out

    for name in raw:
        resolve(name)
    return resolved


#: Resolved profiles (inheritance applied): ``{name: {"description", "settings",
#: "per_dataset", "per_backbone"}}``. Read from ``profiles.json``.
PROFILES: dict[str, dict[str, Any]] = _load_profiles()


def list_profiles() -> list[str]:
    """Names of the available profiles, in file order."""
    return list(PROFILES)


def profile_description(name: str) -> str:
    """One-line description of a profile."""
    _check_profile(name)
    return PROFILES[name]["description"]


def backbone_caps(profile: str, backbone: str, dataset: str) -> dict[str, Any] | None:
    """The ``per_backbone`` entry ``{"settings": {...}, "why": str}`` that ``profile`` applies
    to ``backbone`` (a preset name) on ``dataset``, or ``None`` when there is none."""
    _check_profile(profile)
    entry = PROFILES[profile]["per_backbone"].get(backbone, {}).get(dataset)
    return None if entry is None else {"settings": dict(entry["settings"]), "why": entry["why"]}


def _check_profile(name: Any) -> None:
    if not isinstance(name, str) or name not in PROFILES:
        raise param_error("profile", _OWNER, f"one of {list_profiles()}", name)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one fine-tuning run (defaults = the ``paper`` profile).

    ``batch_size`` is the global batch per optimizer micro-step (split across processes under
    ``accelerate launch``); the effective batch is ``batch_size * grad_accum``. ``head_lr`` is
    the learning rate of the classification head (``None``: same as ``lr``, the adapter's).
    ``max_length`` ``None`` means the dataset's suggested length. ``bf16`` ``"auto"`` enables
    bf16 autocast where it is faster (CUDA with bf16 support; CPUs with AVX-512 BF16/AMX).
    ``grad_clip`` ``None`` disables clipping. Caps ``max_*`` ``None`` use the whole split.
    ``strip_text`` strips leading/trailing whitespace before tokenising (GLUE sentences end with
    a space, which byte-level BPE decoders turn into a final lone-space token they would pool).
    ``group_by_length`` trains on shuffled batches of rows of similar length (less padding;
    :func:`adue.training.sampling.length_grouped_batches`) instead of random batches.
    ``text_column`` / ``label_column`` name the text and label columns (CSV header / JSONL
    keys) of a user dataset folder.
    ``device`` is where fine-tuning, extraction and the methods that train run: ``"auto"``
    (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; it does not
    change what a run computes (see :data:`EXECUTION_FIELDS`).
    """

    dataset: str
    backbone: str
    seed: int
    profile: str = "paper"
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    epochs: int = 30
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 5e-4
    head_lr: float | None = None
    weight_decay: float = 0.1
    warmup_ratio: float = 0.1
    max_length: int | None = 512
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.05
    grad_clip: float | None = 1.0
    bf16: bool | str = True
    eval_batch_size: int = 64
    trust_remote_code: bool = False
    strip_text: bool = False
    split_seed: int = 42
    subsample_seed: int = 0
    text_column: str = "text"
    label_column: str = "label"
    group_by_length: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("dataset", "backbone", "text_column", "label_column"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise param_error(name, _OWNER, "a non-empty str", v)
        _check_profile(self.profile)
        check_number("seed", _OWNER, self.seed, low=0, integer=True)
        for name in ("max_train", "max_val", "max_test"):
            v = getattr(self, name)
            if v is not None:
                check_number(name, _OWNER, v, low=1, integer=True)
        for name in ("epochs", "batch_size", "grad_accum", "lora_r", "eval_batch_size"):
            check_number(name, _OWNER, getattr(self, name), low=1, integer=True)
        for name in ("split_seed", "subsample_seed"):
            check_number(name, _OWNER, getattr(self, name), low=0, integer=True)
        check_number("lr", _OWNER, self.lr, low=0, low_inclusive=False)
        if self.head_lr is not None:
            check_number("head_lr", _OWNER, self.head_lr, low=0, low_inclusive=False)
        check_number("weight_decay", _OWNER, self.weight_decay, low=0)
        check_number("warmup_ratio", _OWNER, self.warmup_ratio, low=0, high=1, high_inclusive=False)
        if self.max_length is not None:
            check_number("max_length", _OWNER, self.max_length, low=2, integer=True)
        check_number("lora_alpha", _OWNER, self.lora_alpha, low=0, low_inclusive=False)
        check_number("lora_dropout", _OWNER, self.lora_dropout, low=0, high=1, high_inclusive=False)
        if self.grad_clip is not None:
            check_number("grad_clip", _OWNER, self.grad_clip, low=0, low_inclusive=False)
        if self.bf16 not in (True, False, "auto") or (
            not isinstance(self.bf16, bool) and self.bf16 != "auto"
        ):
            raise param_error("bf16", _OWNER, "one of {True, False, 'auto'}", self.bf16)
        check_device_setting(self.device, _OWNER)
        if not isinstance(self.device, str):
            raise param_error("device", _OWNER, "'auto', 'cpu', 'cuda' or 'cuda:N'", self.device)
        for name in ("trust_remote_code", "strip_text", "group_by_length"):
            if not isinstance(getattr(self, name), bool):
                raise param_error(name, _OWNER, "a bool", getattr(self, name))
        # Canonical numeric types, so that JSON round trips compare equal.
        for name in ("lr", "weight_decay", "warmup_ratio", "lora_alpha", "lora_dropout"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("head_lr", "grad_clip"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, float(v))

    # ------------------------------------------------------------------ derived
    @property
    def effective_batch_size(self) -> int:
        """Rows per optimizer step: ``batch_size * grad_accum``."""
        return self.batch_size * self.grad_accum

    @property
    def effective_head_lr(self) -> float:
        """Learning rate of the classification head (``head_lr`` or ``lr``)."""
        return self.lr if self.head_lr is None else self.head_lr

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ``ValueError``."""
        if not isinstance(d, dict):
            raise TypeError(f"RunConfig.from_dict needs a dict. Got {type(d).__name__} instead.")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown RunConfig field(s) {unknown}; valid fields: {sorted(names)}.")
        missing = [n for n in ("dataset", "backbone", "seed") if n not in d]
        if missing:
            raise ValueError(f"RunConfig needs the field(s) {missing}.")
        return cls(**d)

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> RunConfig:
        """Read a config written by :meth:`to_json`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"Cannot parse run config {path}: {exc}") from exc
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> RunConfig:
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


#: One line per overridable field: the help of the generated command-line options
#: (:mod:`adue.cli._config_options`).
FIELD_HELP: dict[str, str] = {
    "max_train": "cap on train rows (0: no cap)",
    "max_val": "cap on validation rows (0: no cap)",
    "max_test": "cap on test rows (0: no cap)",
    "epochs": "training epochs (the best by validation accuracy is kept)",
    "batch_size": "global batch per micro-step",
    "grad_accum": "micro-steps per optimizer step",
    "lr": "learning rate of the LoRA adapter",
    "head_lr": "learning rate of the classification head (default: lr)",
    "weight_decay": "AdamW decoupled weight decay (not on biases and norms)",
    "warmup_ratio": "fraction of the steps with linear warm-up",
    "max_length": "truncate texts to N tokens",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA alpha (scale alpha / r)",
    "lora_dropout": "dropout on the LoRA input",
    "grad_clip": "global gradient-norm clipping threshold",
    "bf16": "bf16 autocast for the training forward (auto: where this hardware runs it fast)",
    "eval_batch_size": "batch size of evaluation and extraction",
    "strip_text": "strip whitespace around texts before tokenising",
    "split_seed": "seed of the validation split carved from train where a dataset has none",
    "subsample_seed": "seed of the stratified draw behind the max_* caps",
    "device": "auto (CUDA when available, else CPU), cpu, cuda or cuda:N",
    "group_by_length": "train on shuffled batches of similar-length rows (less padding)",
    "text_column": "column (CSV header) or key (JSONL) of the text in a user dataset folder",
    "label_column": "column (CSV header) or key (JSONL) of the label in a user dataset folder",
}


#: Fields that say where a run executes, not what it computes: a run started on one device
#: resumes on another, and they are not differences between two configurations.
EXECUTION_FIELDS: tuple[str, ...] = ("device",)


def config_differences(
    a: RunConfig | dict[str, Any], b: RunConfig | dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """``{field: (a's value, b's value)}`` for every field that differs, except
    :data:`EXECUTION_FIELDS`. Dicts (e.g. a stored config) may be passed; a field missing from
    one of them takes the :class:`RunConfig` default."""
    defaults = {f.name: f.default for f in fields(RunConfig) if f.default is not dataclasses.MISSING}
    da = {**defaults, **(a.to_dict() if isinstance(a, RunConfig) else a)}
    db = {**defaults, **(b.to_dict() if isinstance(b, RunConfig) else b)}
    keys = [k for k in {**da, **db} if k not in EXECUTION_FIELDS]
    return {k: (da.get(k), db.get(k)) for k in keys if da.get(k) != db.get(k)}


# ---------------------------------------------------------------------------- resolve
def _check_dataset(dataset: Any) -> None:
    """A registry name or a user folder spec (path or ``NAME=PATH``); else list the names."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise param_error("dataset", _OWNER, "a non-empty str", dataset)
    from adue.data import DATASETS
    from adue.data.user import parse_user_spec

    if dataset in DATASETS:
        return
    try:
        user = parse_user_spec(dataset)
    except ValueError as exc:
        raise param_error("dataset", _OWNER, f"one of {list(DATASETS)} or NAME=PATH", dataset) from exc
    if user is None:
        raise param_error(
            "dataset",
            _OWNER,
            f"one of {list(DATASETS)}, or a user folder given as a path or NAME=PATH",
            dataset,
        )


def resolve_config(
    dataset: str,
    backbone: str,
    seed: int,
    profile: str = "cpu",
    **overrides: Any,
) -> RunConfig:
    """Resolve a profile for a dataset and backbone, then apply ``overrides``.

    Layers, later ones winning: the profile's settings, its ``per_dataset`` entry, its
    ``per_backbone`` caps for the pair (matched by preset name), then ``overrides``.

    Parameters
    ----------
    dataset, backbone : str
        Dataset name (or user folder) and backbone preset (or Hugging Face id / folder).
    seed : int
        Training seed (LoRA/head initialisation, shuffling, dropout).
    profile : str
        One of :func:`list_profiles`.
    **overrides
        Any :class:`RunConfig` field; ``None`` values are ignored ("not given"). A cap
        (``max_train``/``max_val``/``max_test``) of ``0`` means "no cap".

    Returns
    -------
    RunConfig
        Validated and frozen.
    """
    _check_profile(profile)
    names = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"Unknown RunConfig field(s) {unknown}; valid fields: {sorted(names)}.")
    for fixed in ("dataset", "backbone", "seed", "profile"):
        if fixed in overrides:
            raise TypeError(f"Pass {fixed!r} as an argument of resolve_config, not as an override.")
    _check_dataset(dataset)
    prof = PROFILES[profile]
    values: dict[str, Any] = dict(prof["settings"])
    if isinstance(dataset, str):
        values.update(prof["per_dataset"].get(dataset, {}))
        if isinstance(backbone, str):
            values.update(prof["per_backbone"].get(backbone, {}).get(dataset, {}).get("settings", {}))
    for k, v in overrides.items():
        if v is None:
            continue
        if k in ("max_train", "max_val", "max_test") and v == 0 and not isinstance(v, bool):
            v = None
        values[k] = v
    return RunConfig(dataset=dataset, backbone=backbone, seed=seed, profile=profile, **values)
