"""Provenance of a result: the versions of the software behind it and the git commit.

The one recorder used by run folders (``versions.json``) and cell JSONs (``versions``,
``git_commit``).
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["PACKAGES", "package_versions", "git_commit", "commit_of"]

#: Distributions whose versions shape a result (fine-tuning, extraction, methods, metrics).
PACKAGES: tuple[str, ...] = (
    "adue",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "numpy",
    "scikit-learn",
    "scipy",
    "safetensors",
)


def package_versions() -> dict[str, str | None]:
    """``{"python": "3.x.y", "<dist>": "<version>" or None (not installed)}`` over :data:`PACKAGES`.

    Read from the installed distributions' metadata (nothing is imported).
    """
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(args: list[str], cwd: Path, timeout: float) -> str | None:
    try:
        res = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_commit() -> str | None:
    """``HEAD`` of the git checkout this package runs from (``+dirty`` if tracked files changed).

    ``None`` when adue is not run from a git checkout -- also when it is installed inside some
    other repository (e.g. a virtual environment within a project): the checkout must track
    this very package's files.
    """
    return commit_of(Path(__file__).resolve().parent)


def commit_of(package_dir: Path) -> str | None:
    """:func:`git_commit` for the package in ``package_dir`` (its ``__init__.py`` must be
    tracked by the enclosing checkout)."""
    if _git(["ls-files", "--error-unmatch", "__init__.py"], package_dir, 10) is None:
        return None
    commit = _git(["rev-parse", "HEAD"], package_dir, 10)
    if not commit:
        return None
    dirty = _git(["status", "--porcelain", "--untracked-files=no"], package_dir, 20)
    return commit + "+dirty" if dirty else commit
