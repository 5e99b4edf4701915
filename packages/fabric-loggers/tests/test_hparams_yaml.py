"""hparams.yaml: the emitter writes YAML that reads back to the same values."""

from __future__ import annotations

import math
from argparse import Namespace
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest
import torch

from fabric_loggers._hparams import convert_params, dump_yaml

TRICKY = {
    "lr": 1e-05,
    "big": 1e16,
    "neg": -3,
    "ratio": 0.5,
    "flag": False,
    "nothing": None,
    "nan": float("nan"),
    "inf": float("inf"),
    "ninf": float("-inf"),
    "plain": "adam_w-v2.1/base",
    "looks_like_bool": "yes",
    "looks_like_null": "null",
    "looks_like_number": "1e3",
    "leading_dot": ".inf",
    "with_colon": "a: b",
    "comment": "# not a comment",
    "quotes": 'say "hi" \\ bye',
    "multiline": "line one\nline two\ttabbed",
    "unicode": "réseau 🚀",
    "control": "bell\x07 nel\x85 ls\u2028",
    "empty": "",
    "spaces": "  padded  ",
    "empty_list": [],
    "empty_dict": {},
    "nested": {"layers": [64, [1, 2], {"kind": "relu"}], "deeper": {"x": 1}},
    3: "int key",
}


def test_block_layout_is_readable():
    text = dump_yaml({"lr": 0.001, "layers": [64, 64], "optimizer": {"name": "Adam", "betas": (0.9, 0.99)}})
    assert text == "lr: 0.001\nlayers:\n  - 64\n  - 64\noptimizer:\n  name: Adam\n  betas:\n    - 0.9\n    - 0.99\n"


def test_strings_that_would_read_as_something_else_are_quoted():
    text = dump_yaml({"a": "yes", "b": "1e3", "c": "a: b", "d": "", "e": "plain"})
    assert text == 'a: "yes"\nb: "1e3"\nc: "a: b"\nd: ""\ne: plain\n'


def test_floats_keep_a_dot_so_yaml_reads_them_as_floats():
    assert dump_yaml({"lr": 1e-05, "a": float("nan"), "b": float("-inf")}) == "lr: 1.0e-05\na: .nan\nb: -.inf\n"


def test_pyyaml_reads_back_the_same_values():
    yaml = pytest.importorskip("yaml")
    loaded = yaml.safe_load(dump_yaml(TRICKY))
    expected = {str(k): v for k, v in TRICKY.items()}
    assert math.isnan(loaded.pop("nan"))
    expected.pop("nan")
    assert loaded == expected


def test_objects_become_plain_values():
    class Color(Enum):
        RED = 1

    @dataclass
    class Opt:
        name: str = "sgd"
        momentum: float = 0.9

    params = {
        "scalar": torch.tensor(2.5),
        "vector": torch.tensor([1, 2]),
        "path": Path("/data/set"),
        "color": Color.RED,
        "opt": Opt(),
        "ns": Namespace(depth=3),
        "tags": ("a", "b"),
    }
    assert dump_yaml(params) == (
        "scalar: 2.5\nvector:\n  - 1\n  - 2\npath: /data/set\ncolor: Color.RED\n"
        "opt:\n  name: sgd\n  momentum: 0.9\nns:\n  depth: 3\ntags:\n  - a\n  - b\n"
    )


def test_numpy_values_are_written_as_plain_numbers():
    np = pytest.importorskip("numpy")
    params = {"f": np.float64(0.5), "i": np.int64(3), "a": np.array([[1, 2]]), "b": np.bool_(True)}
    assert dump_yaml(params) == "f: 0.5\ni: 3\na:\n  -\n    - 1\n    - 2\nb: true\n"


def test_accepted_hyperparameter_containers():
    @dataclass
    class Config:
        lr: float = 0.1

    assert convert_params(None, "L") == {}
    assert convert_params(Namespace(lr=0.1), "L") == {"lr": 0.1}
    assert convert_params(Config(), "L") == {"lr": 0.1}
    assert convert_params({"lr": 0.1}, "L") == {"lr": 0.1}
    with pytest.raises(TypeError, match=r"L\.log_hyperparams\(\) got str"):
        convert_params("lr=0.1", "L")
