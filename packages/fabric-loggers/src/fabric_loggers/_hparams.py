"""Hyperparameters: what ``log_hyperparams`` accepts, and the ``hparams.yaml`` both loggers write.

The YAML is produced here rather than by PyYAML, so the package needs no extra dependency and the
file is byte-for-byte the same on every machine. It covers what hyperparameters are made of: nested
mappings and sequences of None, bools, numbers and strings; tensors and NumPy values become numbers or
lists, paths and any other object their ``str()``. ``yaml.safe_load`` reads it back to the same values.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from fabric_loggers._files import atomic_write

HPARAMS_FILE = "hparams.yaml"


def convert_params(params: Any, owner: str) -> dict[str, Any]:
    """``params`` (a mapping, an ``argparse.Namespace``, a dataclass or None) as a dict."""
    if params is None:
        return {}
    if isinstance(params, Namespace):
        return vars(params).copy()
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return dataclasses.asdict(params)
    if isinstance(params, Mapping):
        return dict(params)
    raise TypeError(
        f"{owner}.log_hyperparams() got {type(params).__name__}: {params!r}; pass a dict, an argparse.Namespace "
        "or a dataclass instance."
    )


def write_hparams(log_dir: str, params: Mapping[str, Any]) -> str:
    """Write ``params`` to ``log_dir/hparams.yaml`` atomically; returns the file's path."""
    path = os.path.join(log_dir, HPARAMS_FILE)
    with atomic_write(path) as f:
        f.write(dump_yaml(params))
    return path


def dump_yaml(data: Mapping[str, Any]) -> str:
    """``data`` as a block-style YAML document.

    Example::

        >>> print(dump_yaml({"lr": 1e-3, "layers": [64, 64], "optimizer": {"name": "Adam"}}), end="")
        lr: 0.001
        layers:
          - 64
          - 64
        optimizer:
          name: Adam
    """
    return "\n".join(_block(_plain(data), 0)) + "\n"


def _plain(value: Any) -> Any:
    """``value`` made of dicts, lists, None, bools, numbers and strings only."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    for kind in (bool, int, float):  # NumPy's float64, IntEnum, ...: as the plain type, never their repr
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, Namespace):
        value = vars(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, Tensor):
        return _plain(value.item() if value.numel() == 1 else value.tolist())
    if callable(getattr(value, "tolist", None)):  # NumPy arrays and scalars
        return _plain(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _block(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            if _is_block(item):
                lines.append(f"{pad}{_scalar(key)}:")
                lines.extend(_block(item, indent + 2))
            else:
                lines.append(f"{pad}{_scalar(key)}: {_scalar(item)}")
        return lines
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            if _is_block(item):
                lines.append(f"{pad}-")
                lines.extend(_block(item, indent + 2))
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return lines
    return [pad + _scalar(value)]


def _is_block(value: Any) -> bool:
    return isinstance(value, (dict, list)) and bool(value)


# A string written without quotes must not read back as anything else: no leading digit, sign or dot
# (numbers, dates, .inf), no ":", "#" or spaces, and none of YAML 1.1's booleans and nulls.
_PLAIN_STRING = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*", re.ASCII)
_RESERVED = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}
_LINE_BREAKS = {"\x85", "\u2028", "\u2029", "\ufeff"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if _PLAIN_STRING.fullmatch(value) and value.lower() not in _RESERVED:
        return value
    return _quoted(value)


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    # YAML 1.1 (PyYAML) reads "1e-05" as a string: a float needs its dot.
    if "e" in text and "." not in text:
        text = text.replace("e", ".0e")
    return text


def _quoted(text: str) -> str:
    out = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0x20 <= code < 0x7F or (code > 0x7F and char.isprintable() and char not in _LINE_BREAKS):
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'
