"""Loading a user's trained classifier as one :class:`LoadedClassifier`.

``model_ref`` may be

- an adue run folder (``adue finetune`` output: ``adapter/`` + ``dataset.json`` + ``COMPLETE``),
  loaded on its backbone exactly as training built it (:func:`adue.backbones.load_backbone`);
- a ``save_pretrained`` folder of a ``*ForSequenceClassification`` (``config.json`` + weights
  + tokenizer files);
- a PEFT adapter folder (``adapter_config.json``, as ``PeftModel.save_pretrained`` writes it),
  on the base given by ``base=`` or the adapter's ``base_model_name_or_path``: a preset name
  (``minilm``, ...), a folder or a hub id. The adapter must carry the trained head (peft does
  with ``task_type="SEQ_CLS"``); LoRA is merged into the base weights;
- a hub id (``org/name``): a checkpoint or an adapter repository, downloaded with
  ``huggingface_hub.snapshot_download`` (safetensors weights only, no pickle; ``*.py`` files
  only with ``trust_remote_code``) and then loaded from the local snapshot.

Nothing is written into the model's folder. The :attr:`LoadedClassifier.reference` records
where the model came from and the sha256 of every weight, config and tokenizer file read,
so :func:`verify_reference` can tell later that a file changed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "LoadedClassifier",
    "ModelFileChangedError",
    "load_classifier",
    "verify_reference",
    "match_labels",
]

logger = logging.getLogger(__name__)

_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
    "added_tokens.json", "chat_template.jinja",
)
_ADAPTER_CONFIG = "adapter_config.json"
_ADAPTER_WEIGHTS = "adapter_model.safetensors"
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
_GENERIC_LABEL = re.compile(r"LABEL_(\d+)")
_DEFAULT_MAX_LENGTH = 512
# The layer that outputs the logits, as peft stores a modules_to_save head (prefix stripped).
_LOGIT_KEYS = (
    "classifier.out_proj.weight", "classification_head.out_proj.weight", "classifier.weight",
    "score.weight",
)


class ModelFileChangedError(ValueError):
    """A file recorded in a model reference is missing or its sha256 changed."""


@dataclass
class LoadedClassifier:
    """A sequence classifier ready for :func:`adue.inference.extract_features`.

    ``model``: the ``*ForSequenceClassification`` (any adapter merged), float32, eval mode, on
    the device; ``tokenizer``: its tokenizer (right padding, pad token set and equal to
    ``model.config.pad_token_id``); ``max_length``: the token limit used with it (a run's
    own setting, else ``min(512, the tokenizer's limit)``); ``label_names``: class ``i``'s name
    at position ``i``; ``reference``: a JSON-able dict ``{"kind": "run" | "checkpoint" |
    "adapter" | "hub", "path", "id", "revision", "format", "base", "files"}`` where ``path`` is
    the local folder (``None`` for a hub id; the download is in ``cache_path``), ``id`` the hub
    id, ``revision`` the hub commit, ``format`` what the folder holds (``"run"``,
    ``"checkpoint"``, ``"adapter"``), ``base`` the same kind of dict for the base model of an
    adapter or run (``None`` otherwise; ``kind`` ``"preset"`` carries the preset's ``name``),
    and ``files`` ``{path relative to the folder: sha256}``.
    """

    model: Any
    tokenizer: Any
    max_length: int
    label_names: list[str]
    reference: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        """Number of classes ``C``."""
        return len(self.label_names)


# ----------------------------------------------------------------------------- files, hashes
def _sha256(path: Path) -> str:
    from adue.backbones import sha256_file

    return sha256_file(path)


def _hash_files(root: Path, names: list[str]) -> dict[str, str]:
    return {name: _sha256(root / name) for name in names}


def _weight_files(folder: Path) -> list[str]:
    """The weight files transformers reads from a ``save_pretrained`` folder (relative names)."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            weight_map = _read_json(folder / index).get("weight_map", {})
            return [index, *sorted(set(weight_map.values()))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return [single]
    return []


def _present(folder: Path, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if (folder / n).is_file()]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object. Got {type(data).__name__} instead.")
    return data


def verify_reference(reference: dict[str, Any]) -> None:
    """Re-hash every file of ``reference`` (and of its ``base``); raise
    :class:`ModelFileChangedError` naming the first file that is missing or whose sha256
    differs from the recorded one."""
    if not isinstance(reference, dict) or not isinstance(reference.get("files"), dict):
        raise ValueError(
            "The 'reference' parameter of verify_reference must be a model reference dict with "
            f"'files' (LoadedClassifier.reference). Got {type(reference).__name__} instead."
        )
    root_text = reference.get("cache_path") or reference.get("path")
    if not root_text:
        raise ValueError("The model reference has neither 'path' nor 'cache_path'.")
    root = Path(root_text)
    for name, digest in reference["files"].items():
        path = root / name
        if not path.is_file():
            raise ModelFileChangedError(
                f"The model file {path} recorded in the reference is missing; restore it or "
                "refit against the model as it is now."
            )
        actual = _sha256(path)
        if actual != digest:
            raise ModelFileChangedError(
                f"The model file {path} changed since it was recorded (sha256 {actual}, "
                f"recorded {digest}); restore it or refit against the model as it is now."
            )
    if isinstance(reference.get("base"), dict):
        verify_reference(reference["base"])


# ------------------------------------------------------------------------------- locating
def _folder_format(folder: Path) -> str:
    from adue.training import runfolder as rf

    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        raise ValueError(
            f"The model folder {folder} is empty. Pass a folder written by save_pretrained "
            "(config.json + weights + tokenizer), a PEFT adapter folder (adapter_config.json) "
            "or an adue run folder."
        )
    if rf.is_complete(folder) or ((folder / rf.DATASET).is_file() and (folder / rf.ADAPTER).is_dir()):
        return "run"
    if (folder / _ADAPTER_CONFIG).is_file():
        return "adapter"
    if (folder / "config.json").is_file():
        return "checkpoint"
    raise ValueError(
        f"The folder {folder} is not a model: it has no config.json (save_pretrained), "
        f"{_ADAPTER_CONFIG} (PEFT adapter) or adue run files; it holds {entries[:8]}."
    )


def _download(repo_id: str, revision: str | None, trust_remote_code: bool) -> Path:
    """Local snapshot of a hub repository (safetensors, JSON, tokenizer files; ``*.py`` only
    with ``trust_remote_code``); downloads when online, else uses the Hugging Face cache."""
    from huggingface_hub import snapshot_download

    patterns = _HUB_PATTERNS + (["*.py"] if trust_remote_code else [])
    try:
        path = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except Exception as exc:  # offline, unknown repo, bad revision: one clear message
        raise ValueError(
            f"Could not get the hub model {repo_id!r} (revision {revision or 'main'}): "
            f"{str(exc).strip()}. Hub models need internet access or a copy in the Hugging "
            "Face cache; or pass a local folder."
        ) from exc
    return Path(path)


def _locate(model_ref: str, revision: str | None, trust_remote_code: bool) -> dict[str, Any]:
    """``{"kind", "folder", "id", "revision"}`` for a local folder or a hub id."""
    from adue.backbones import _HUB_ID, _looks_like_path

    local = Path(model_ref).expanduser()
    if local.exists():
        if revision is not None:
            raise ValueError(
                "The 'revision' parameter of load_classifier applies to hub ids only. "
                f"Got {revision!r} for the local path {str(local)!r} instead."
            )
        if not local.is_dir():
            raise ValueError(
                f"The model path {str(local)!r} is a file; pass the folder that holds it "
                "(config.json + weights, or adapter_config.json)."
            )
        folder = local.resolve()
        return {"kind": None, "folder": folder, "id": None, "revision": None}
    if _looks_like_path(model_ref) or not _HUB_ID.fullmatch(model_ref):
        raise FileNotFoundError(
            f"The model folder {model_ref!r} does not exist (and it is not a hub id 'org/name')."
        )
    folder = _download(model_ref, revision, trust_remote_code)
    return {"kind": "hub", "folder": folder, "id": model_ref, "revision": folder.name}


# --------------------------------------------------------------------------------- loading
def _label_names(config: Any) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    n = int(getattr(config, "num_labels", len(id2label)))
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]


def _set_label_names(model: Any, names: list[str]) -> None:
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {name: i for i, name in enumerate(names)}


def _align_padding(model: Any, tokenizer: Any) -> None:
    """:func:`adue.backbones.align_padding` for a trained checkpoint: its own pad id wins."""
    from adue.backbones import align_padding

    align_padding(model, tokenizer, name=tokenizer.name_or_path, model_pad_wins=True)


def _tokenizer(folder: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    if not _present(folder, _TOKENIZER_FILES):
        raise ValueError(
            f"{folder} holds no tokenizer files ({', '.join(_TOKENIZER_FILES[:4])}, ...); save "
            "the tokenizer next to the model with tokenizer.save_pretrained(folder)."
        )
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)


def _not_a_classifier(folder: Path, config: Any, new_keys: list[str]) -> ValueError:
    from adue.architectures import model_family

    archs = list(getattr(config, "architectures", None) or [])
    what = f"{archs[0]} checkpoint" if archs else f"{config.model_type!r} checkpoint"
    if any(a.endswith("ForCausalLM") for a in archs) or model_family(config.model_type) == "decoder":
        what = f"causal language model ({what})"
    return ValueError(
        f"{folder} is a {what} without a trained classification head (these weights would be "
        f"newly initialised: {new_keys[:4]}). Pass a *ForSequenceClassification checkpoint, or a "
        "PEFT adapter trained for sequence classification together with its base (--base)."
    )


def _load_checkpoint(folder: Path, trust_remote_code: bool) -> tuple[Any, Any, list[str]]:
    """A ``*ForSequenceClassification`` from a ``save_pretrained`` folder; its head must be
    in the checkpoint (not newly initialised)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from adue.architectures import head_module_names

    if not _weight_files(folder):
        raise ValueError(
            f"{folder} has a config.json but no weights (model.safetensors or shards; from "
            "the hub adue takes safetensors weights only, never pickled .bin files)."
        )
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(folder), trust_remote_code=trust_remote_code, dtype=torch.float32,
            output_loading_info=True,
        )
    except (ValueError, KeyError) as exc:  # no sequence-classification class for this type
        raise ValueError(
            f"{folder} cannot be loaded as a sequence classifier: "
            f"{str(exc).strip()}"
        ) from exc
    heads = head_module_names(model)
    new = sorted(k for k in info["missing_keys"] if k.split(".")[0] in heads)
    if new:
        raise _not_a_classifier(folder, config, new)
    tokenizer = _tokenizer(folder, trust_remote_code)
    _align_padding(model, tokenizer)
    return model, tokenizer, _label_names(model.config)


def _adapter_num_labels(folder: Path, adapter_config: dict[str, Any]) -> int:
    """Classes of the head the adapter carries (peft ``modules_to_save``), from its weights."""
    from safetensors import safe_open

    path = folder / _ADAPTER_WEIGHTS
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("adapter_model.*"))
        raise ValueError(
            f"The adapter {folder} has no {_ADAPTER_WEIGHTS} (found {found}); adue reads "
            "safetensors only: save it with PeftModel.save_pretrained(..., safe_serialization=True)."
        )
    with safe_open(str(path), framework="pt") as fh:
        shapes = {k.removeprefix("base_model.model."): fh.get_slice(k).get_shape()
                  for k in fh.keys()}  # noqa: SIM118 - safe_open API
    for key in _LOGIT_KEYS:
        if key in shapes and len(shapes[key]) == 2:
            return int(shapes[key][0])
    raise ValueError(
        f"The adapter {folder} holds no trained classification head (task_type "
        f"{adapter_config.get('task_type')!r}, modules_to_save "
        f"{adapter_config.get('modules_to_save')}); adue needs the head the adapter was trained "
        "with: train with task_type='SEQ_CLS' (peft then saves the head), or pass a "
        "*ForSequenceClassification checkpoint."
    )


def _folder_reference(kind: str, folder: Path, files: list[str], **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "path": str(folder), "id": None, "revision": None, **extra,
            "files": _hash_files(folder, files)}


def _model_files(folder: Path) -> list[str]:
    return _weight_files(folder) + _present(folder, ("config.json", *_TOKENIZER_FILES))


def _resolve_base(
    spec: str, revision: str | None, trust_remote_code: bool, adapter: Path
) -> tuple[Path, dict[str, Any]]:
    """Local folder of an adapter's base (preset, folder or hub id) and its reference."""
    from adue.backbones import PRESETS, resolve_backbone

    try:
        where = resolve_backbone(spec)
    except (FileNotFoundError, ValueError) as exc:
        raise FileNotFoundError(
            f"The base model {spec!r} of the adapter {adapter} cannot be found: {exc} "
            f"Pass base= (--base): a preset ({', '.join(PRESETS)}), a local folder or a hub id."
        ) from exc
    if Path(where).is_dir():
        folder = Path(where).resolve()
        if spec in PRESETS:
            return folder, _folder_reference("preset", folder, _model_files(folder), name=spec)
        return folder, _folder_reference("checkpoint", folder, _model_files(folder))
    folder = _download(where, revision, trust_remote_code)
    ref = {"kind": "hub", "path": None, "id": where, "revision": folder.name,
           "cache_path": str(folder), "files": _hash_files(folder, _model_files(folder))}
    return folder, ref


def _load_adapter(
    folder: Path,
    base: str | None,
    trust_remote_code: bool,
    *,
    label_names: list[str] | None = None,
) -> tuple[Any, Any, list[str], dict[str, Any]]:
    """``(merged model, tokenizer, label names, base reference)`` of a PEFT adapter folder.

    The base is built as adue's training builds it (:func:`adue.backbones.load_backbone` on
    the base's local folder: right padding, pad = end-of-sequence token where the tokenizer
    has none); the adapter's own tokenizer files, if any, take precedence over the base's.
    """
    from peft import PeftModel

    from adue.backbones import load_backbone

    adapter_config = _read_json(folder / _ADAPTER_CONFIG)
    spec = base if base is not None else adapter_config.get("base_model_name_or_path")
    if not spec:
        raise ValueError(
            f"The adapter {folder} does not name its base model (base_model_name_or_path is "
            "empty); pass base= (--base): a preset, a local folder or a hub id."
        )
    num_labels = _adapter_num_labels(folder, adapter_config)
    base_folder, base_ref = _resolve_base(
        os.fspath(spec), adapter_config.get("revision"), trust_remote_code, folder
    )
    model, tokenizer = load_backbone(
        str(base_folder), num_labels, trust_remote_code=trust_remote_code
    )
    if _present(folder, _TOKENIZER_FILES):
        tokenizer = _tokenizer(folder, trust_remote_code)
        model.config.pad_token_id = None  # the base's pad id belongs to the base's tokenizer
        _align_padding(model, tokenizer)
    merged = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    if label_names is None and (folder / "config.json").is_file():
        label_names = _label_names(_config_of(folder, trust_remote_code))
    names = label_names or [f"LABEL_{i}" for i in range(num_labels)]
    if len(names) != num_labels:
        raise ValueError(
            f"The adapter {folder} has a head with {num_labels} classes but {len(names)} label "
            f"names ({names})."
        )
    _set_label_names(merged, names)
    return merged, tokenizer, names, base_ref


def _config_of(folder: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)


def _load_run(run_dir: Path, trust_remote_code: bool) -> LoadedClassifier:
    """A finished ``adue finetune`` run: its backbone with the adapter merged, class names
    from ``dataset.json``, ``max_length`` as the run used it."""
    from adue.training import runfolder as rf
    from adue.training.loop import resolve_max_length

    rf.check_finished(run_dir)
    cfg = rf.read_run_config(run_dir)
    info = rf.read_json(run_dir / rf.DATASET)
    model, tokenizer, names, base_ref = _load_adapter(
        run_dir / rf.ADAPTER,
        cfg.backbone,
        bool(cfg.trust_remote_code or trust_remote_code),
        label_names=[str(n) for n in info["class_names"]],
    )
    adapter_files = [f"{rf.ADAPTER}/{n}" for n in (_ADAPTER_WEIGHTS, _ADAPTER_CONFIG)]
    ref = _folder_reference(
        "run", run_dir, [*adapter_files, rf.CONFIG, rf.DATASET], format="run", base=base_ref
    )
    return LoadedClassifier(model, tokenizer, resolve_max_length(cfg, tokenizer), names, ref)


def _default_max_length(tokenizer: Any) -> int:
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _DEFAULT_MAX_LENGTH:
        return limit
    return _DEFAULT_MAX_LENGTH


def _load_folder(
    folder: Path, fmt: str, base: str | os.PathLike | None, trust_remote_code: bool
) -> LoadedClassifier:
    if fmt == "run":
        if base is not None:
            raise ValueError(
                "The 'base' parameter of load_classifier does not apply to an adue run folder "
                f"(its backbone is recorded in {folder / 'config.json'}). Got {base!r} instead."
            )
        return _load_run(folder, trust_remote_code)
    if fmt == "adapter":
        spec = None if base is None else os.fspath(base)
        model, tokenizer, names, base_ref = _load_adapter(folder, spec, trust_remote_code)
        files = [_ADAPTER_WEIGHTS, *_present(folder, (_ADAPTER_CONFIG, "config.json",
                                                      *_TOKENIZER_FILES))]
        ref = _folder_reference("adapter", folder, files, format="adapter", base=base_ref)
        return LoadedClassifier(model, tokenizer, _default_max_length(tokenizer), names, ref)
    if base is not None:
        raise ValueError(
            "The 'base' parameter of load_classifier applies to PEFT adapters only; "
            f"{folder} is a full checkpoint. Got {base!r} instead."
        )
    model, tokenizer, names = _load_checkpoint(folder, trust_remote_code)
    ref = _folder_reference("checkpoint", folder, _model_files(folder), format="checkpoint",
                            base=None)
    return LoadedClassifier(model, tokenizer, _default_max_length(tokenizer), names, ref)


def load_classifier(
    model_ref: str | os.PathLike,
    *,
    base: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> LoadedClassifier:
    """Load a trained sequence classifier (see the module docstring for what ``model_ref``
    may be); ``base`` only for a PEFT adapter, ``revision`` only for a hub id, ``device`` as
    :func:`adue.device.resolve_device` (default: CUDA when available, else CPU).

    The model comes back float32, in eval mode, on the device; ``reference`` pins every file
    read by its sha256. Errors name the problem: an empty or non-model folder, a checkpoint
    without a trained classification head (a causal LM: use a ``*ForSequenceClassification``
    checkpoint or an adapter with its base), an adapter whose base cannot be found.
    """
    from adue.device import resolve_device

    if not isinstance(model_ref, (str, os.PathLike)) or not os.fspath(model_ref).strip():
        raise ValueError(
            "The 'model_ref' parameter of load_classifier must be a folder or a hub id. "
            f"Got {model_ref!r} instead."
        )
    if not isinstance(trust_remote_code, bool):
        raise ValueError(
            "The 'trust_remote_code' parameter of load_classifier must be a bool. "
            f"Got {trust_remote_code!r} instead."
        )
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ValueError(
            "The 'revision' parameter of load_classifier must be None or a non-empty str. "
            f"Got {revision!r} instead."
        )
    target = resolve_device("auto" if device is None else device)
    where = _locate(os.fspath(model_ref), revision, trust_remote_code)
    loaded = _load_folder(where["folder"], _folder_format(where["folder"]), base,
                          trust_remote_code)
    if where["kind"] == "hub":
        loaded.reference.update(kind="hub", path=None, id=where["id"],
                                revision=where["revision"], cache_path=str(where["folder"]))
    loaded.model.to(target)
    loaded.model.eval()
    logger.info("loaded %s %s (%d classes) on %s", loaded.reference["kind"],
                where["id"] or where["folder"], loaded.num_labels, target)
    return loaded


# ---------------------------------------------------------------------------------- labels
def _generic(names: list[str]) -> bool:
    """``LABEL_0, LABEL_1, ...`` (transformers' defaults) or ``0, 1, ...``: no real names."""
    for i, name in enumerate(names):
        m = _GENERIC_LABEL.fullmatch(name)
        if not ((m is not None and int(m.group(1)) == i) or name == str(i)):
            return False
    return True


def match_labels(model_label_names: list[str], data_label_names: list[str]) -> list[int]:
    """``mapping[j]`` = the model's class id for the data's class ``j``.

    By name where both sides have real names; by integer (``mapping[j] == j``) where either
    side has only ``LABEL_i`` / ``"i"`` placeholders. Another number of classes, a data label
    the model does not know, or repeated model names is a ``ValueError`` naming both sides.
    """
    model = [str(n) for n in model_label_names]
    data = [str(n) for n in data_label_names]
    if len(model) != len(data):
        raise ValueError(
            f"The model has {len(model)} classes {model} but the data has {len(data)} {data}; "
            "use the data the classifier was trained for."
        )
    if _generic(model) or _generic(data):
        return list(range(len(data)))
    if len(set(model)) != len(model):
        raise ValueError(f"The model's label names {model} repeat; they cannot be matched.")
    unknown = [n for n in data if n not in model]
    if unknown:
        hint = ""
        folded = {m.casefold(): m for m in model}
        near = [f"{n!r}~{folded[n.casefold()]!r}" for n in unknown if n.casefold() in folded]
        if near:
            hint = f" (they differ only in case: {', '.join(near)})"
        raise ValueError(
            f"The data's label(s) {unknown} are not labels of the model{hint}. "
            f"Model labels: {model}; data labels: {data}."
        )
    return [model.index(n) for n in data]
