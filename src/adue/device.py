"""The one device setting: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``,
``"cuda"`` or ``"cuda:N"``; used by fine-tuning, extraction and every method that trains."""

from __future__ import annotations

import re

import torch

__all__ = ["resolve_device", "check_device_setting"]

_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
_MUST = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def check_device_setting(setting: object, owner: str = "resolve_device") -> None:
    """Raise ``ValueError`` unless ``setting`` is a valid device setting (or ``None``).

    Checks the spelling only; whether the device exists is checked by :func:`resolve_device`.
    """
    if setting is None or isinstance(setting, torch.device):
        return
    if not isinstance(setting, str) or not _PATTERN.fullmatch(setting):
        raise ValueError(
            f"The 'device' parameter of {owner} must be {_MUST}. Got {setting!r} instead."
        )


def resolve_device(setting: str | torch.device | None = "auto", *,
                   owner: str = "resolve_device") -> torch.device:
    """The ``torch.device`` a setting names; ``"auto"`` or ``None``: ``cuda`` if available, else ``cpu``.

    A bad setting, or a CUDA device that this machine does not have, is a ``ValueError`` naming
    it (as "The 'device' parameter of ``owner``").
    """
    check_device_setting(setting, owner)
    if setting is None or setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if device.index is None else device.index
        if index >= count:
            have = "no CUDA device" if count == 0 else f"{count} CUDA device(s)"
            raise ValueError(
                f"The 'device' parameter of {owner} must name a device this machine "
                f"has ({have}; use 'auto' or 'cpu'). Got {str(setting)!r} instead."
            )
    return device
