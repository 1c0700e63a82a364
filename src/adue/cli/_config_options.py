"""Command-line options generated from :class:`adue.config.RunConfig`: one ``--<field>`` per
overridable field, typed from the field's annotation, with the help text of
:data:`adue.config.FIELD_HELP`. Shared by every command that resolves a run config
(``adue finetune``, ``adue run``, ...), so a new field is a new flag everywhere at once.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any

__all__ = ["FIXED_FIELDS", "DATA_FIELDS", "add_config_options", "config_overrides", "parse_value"]

#: Fields set by a command's own options (or never from the command line: remote code is
#: its own ``--trust-remote-code`` switch where a command offers it).
FIXED_FIELDS = ("dataset", "backbone", "seed", "profile", "trust_remote_code")
#: Fields given by :func:`adue.cli._options.add_data_options` (``--text-column``,
#: ``--label-column``, dests without the ``cfg_`` prefix); :func:`config_overrides` reads them.
DATA_FIELDS = ("text_column", "label_column")
_PREFIX = "cfg_"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def parse_value(text: str) -> Any:
    """A JSON literal (``2000``, ``5e-4``, ``true``, ``null``), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _converter(annotation: str) -> tuple[Callable[[str], Any], str]:
    """``(parse, metavar)`` for a field annotated ``annotation`` (a string: postponed
    annotations), e.g. ``"int | None"``, ``"float"``, ``"bool | str"``."""
    kinds = {part.strip() for part in str(annotation).split("|")}

    def parse(text: str) -> Any:
        low = text.strip().lower()
        if "bool" in kinds:
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            if "str" in kinds:
                return text
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        for kind, cast in (("int", int), ("float", float)):
            if kind in kinds:
                try:
                    return cast(text)
                except ValueError:
                    raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        return text

    if "bool" in kinds:
        metavar = "{auto,true,false}" if "str" in kinds else "{true,false}"
    elif "int" in kinds:
        metavar = "N"
    elif "float" in kinds:
        metavar = "X"
    else:
        metavar = "S"
    return parse, metavar


_METAVARS = {"device": "DEVICE"}


def add_config_options(
    parser: argparse.ArgumentParser,
    *,
    title: str = "overrides of the profile (default: the profile's values)",
    exclude: Iterable[str] = (),
) -> argparse._ArgumentGroup:
    """Add ``--<field>`` (dest ``cfg_<field>``, default ``None`` = "not given") for every
    :class:`RunConfig` field except :data:`FIXED_FIELDS` and ``exclude``."""
    from adue.config import FIELD_HELP, RunConfig

    skip = set(FIXED_FIELDS) | set(DATA_FIELDS) | set(exclude)
    group = parser.add_argument_group(title)
    for f in fields(RunConfig):
        if f.name in skip:
            continue
        parse, metavar = _converter(f.type)
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=_PREFIX + f.name,
            type=parse,
            default=None,
            metavar=_METAVARS.get(f.name, metavar),
            help=FIELD_HELP.get(f.name, f.name),
        )
    return group


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The overrides given on the command line: ``{field: value}`` (``None``: not given),
    including the data options' ``text_column`` / ``label_column`` where the parser has them."""
    out = {
        k[len(_PREFIX):]: v
        for k, v in vars(args).items()
        if k.startswith(_PREFIX) and v is not None
    }
    for name in DATA_FIELDS:
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    return out
