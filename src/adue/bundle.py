"""The bundle folder: a classifier reference (or copy), a fitted uncertainty method, a threshold.

Layout (nothing pickled)::

    BUNDLE/
      bundle.json          manifest (format version, method, labels, model reference + sha256,
                           tokenizer settings, pooling, threshold, calibration rows, versions)
      method.safetensors   the method's fitted state (UncertaintyMethod.save)
      model/               only with copy_model=True: the classifier (adapter merged) and its
                           tokenizer, save_pretrained, safetensors weights

The manifest records the sha256 of ``method.safetensors`` and of every model weight file;
:func:`read_manifest`, :func:`load_method_file` and :func:`check_model_files` check them, so a
changed file is a clear error naming it, never a silent wrong answer. A bundle is written in a
hidden temporary folder next to the target and renamed into place at the end.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from adue.backbones import sha256_file

__all__ = [
    "BUNDLE_FILE",
    "FORMAT_VERSION",
    "METHOD_FILE",
    "MODEL_DIR",
    "BundleError",
    "check_model_files",
    "load_method_file",
    "model_source",
    "read_manifest",
    "write_bundle",
]

logger = logging.getLogger(__name__)

#: Version of the bundle layout written by this adue; readers refuse newer ones.
FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
METHOD_FILE = "method.safetensors"
MODEL_DIR = "model"


class BundleError(ValueError):
    """A bundle folder that cannot be used: missing, newer format, or a changed file."""


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"The bundle folder {path} already exists. Choose another --output or pass "
            "--overwrite (overwrite=True) to replace it."
        )
    if path.exists() and not (path / BUNDLE_FILE).is_file():
        raise FileExistsError(
            f"{path} exists and is not a bundle (no {BUNDLE_FILE}); refusing to replace it."
        )


def _copy_model(loaded: Any, dest: Path) -> dict[str, str]:
    """``save_pretrained`` the (merged) model and its tokenizer into ``dest``; file hashes."""
    loaded.model.save_pretrained(dest, safe_serialization=True)
    loaded.tokenizer.save_pretrained(dest)
    return {p.relative_to(dest).as_posix(): sha256_file(p) for p in sorted(dest.rglob("*")) if p.is_file()}


def write_bundle(
    path: str | os.PathLike,
    manifest: dict[str, Any],
    method: Any,
    *,
    loaded: Any = None,
    copy_model: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``BUNDLE/{bundle.json, method.safetensors[, model/]}`` atomically; return the path.

    ``manifest`` is completed with the format version, the method file's sha256 and (with
    ``copy_model``, which needs ``loaded``, a :class:`adue.models.LoadedClassifier`) the copied
    model's file hashes. An existing ``path`` is refused unless ``overwrite``.
    """
    path = Path(path)
    _refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        manifest = {**manifest, "format_version": FORMAT_VERSION}
        method.save(tmp / METHOD_FILE)
        manifest["method"] = {**manifest.get("method", {}), "file": METHOD_FILE,
                              "sha256": sha256_file(tmp / METHOD_FILE)}
        model = dict(manifest.get("model", {}))
        model["copied"] = bool(copy_model)
        if copy_model:
            if loaded is None:
                raise ValueError("write_bundle(copy_model=True) needs the loaded classifier ('loaded').")
            model["copy"] = {"path": MODEL_DIR, "files": _copy_model(loaded, tmp / MODEL_DIR)}
        manifest["model"] = model
        (tmp / BUNDLE_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Wrote bundle %s", path)
    return path


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing bundle there is moved aside first, then removed."""
    if not path.exists():
        os.rename(tmp, path)
        return
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    os.rename(path, old / "bundle")
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """``bundle.json`` of the bundle at ``path``, its format version checked."""
    path = Path(path)
    file = path / BUNDLE_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"No bundle folder at {path}. Create one with 'adue fit'.")
    if not file.is_file():
        raise BundleError(f"{path} is not a bundle: it has no {BUNDLE_FILE}. Create one with 'adue fit'.")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"Cannot read {file}: {exc}") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int):
        raise BundleError(f"{file} has no integer 'format_version'; it was not written by adue.")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"The bundle {path} has format version {version}, newer than the {FORMAT_VERSION} this "
            "adue reads. Upgrade adue (pip install -U adue) to load it."
        )
    return manifest


def _check_hash(file: Path, expected: str, what: str) -> None:
    if not file.is_file():
        raise BundleError(f"The {what} file {file} is missing from the bundle.")
    got = sha256_file(file)
    if got != expected:
        raise BundleError(
            f"The {what} file {file} has changed since the bundle was written (sha256 {got}, "
            f"expected {expected}). Refit the bundle with 'adue fit' or restore the file."
        )


def load_method_file(path: str | os.PathLike, manifest: dict[str, Any]) -> Any:
    """The fitted method of the bundle at ``path``, after checking its sha256."""
    from adue.methods import load_method

    info = manifest["method"]
    file = Path(path) / info.get("file", METHOD_FILE)
    _check_hash(file, info["sha256"], "method")
    return load_method(file)


def model_source(path: str | os.PathLike, manifest: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(model_ref, load_kwargs)`` for :func:`adue.models.load_classifier` of the bundle's model:
    the copy inside the bundle, or the recorded reference (its adapter base, hub revision)."""
    model = manifest["model"]
    if model.get("copied"):
        return str(Path(path) / model["copy"]["path"]), {}
    ref = model["reference"]
    base = ref.get("base")
    kwargs: dict[str, Any] = {"revision": ref.get("revision") if ref.get("kind") == "hub" else None}
    if ref.get("kind") == "adapter" and isinstance(base, dict):
        kwargs["base"] = base.get("path") or base.get("id")
    return str(ref.get("path") or ref.get("id")), kwargs


def _compare_reference(recorded: dict[str, Any], loaded: dict[str, Any]) -> None:
    """Raise naming the first file whose sha256 as loaded differs from the recorded one."""
    root = Path(recorded.get("cache_path") or recorded.get("path") or ".")
    got_files = loaded.get("files", {}) if isinstance(loaded, dict) else {}
    for name, digest in recorded.get("files", {}).items():
        got = got_files.get(name)
        if got != digest:
            state = "is missing or was not loaded" if got is None else f"has sha256 {got}"
            raise BundleError(
                f"The model file {root / name} changed since the bundle was written: it {state}, "
                f"recorded {digest}. Restore the file or refit the bundle with 'adue fit'."
            )
    if isinstance(recorded.get("base"), dict):
        _compare_reference(recorded["base"], loaded.get("base") or {})


def check_model_files(path: str | os.PathLike, manifest: dict[str, Any], loaded_reference: dict[str, Any]) -> None:
    """Check the model just loaded for the bundle at ``path`` against the recorded hashes.

    ``loaded_reference`` is :attr:`adue.models.LoadedClassifier.reference`, whose hashes
    ``load_classifier`` computed from the very files it read (one pass over the weights). A
    copied model's remaining files (tokenizer extras) are hashed here. A changed or missing
    file is a :class:`BundleError` naming it.
    """
    model = manifest["model"]
    if not model.get("copied"):
        _compare_reference(model["reference"], loaded_reference)
        return
    folder = Path(path) / model["copy"]["path"]
    seen = loaded_reference.get("files", {})
    for name, digest in model["copy"]["files"].items():
        if name in seen:
            if seen[name] != digest:
                raise BundleError(
                    f"The model weight file {folder / name} has changed since the bundle was written "
                    f"(sha256 {seen[name]}, expected {digest}). Refit the bundle or restore the file."
                )
        else:
            _check_hash(folder / name, digest, "model")
