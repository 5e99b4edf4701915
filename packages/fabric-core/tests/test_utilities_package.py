"""fabric_core.utilities as a package: Lightning's exports, lazy imports, rank-zero output, warnings, enums."""

from __future__ import annotations

import importlib
import logging
import os
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

import fabric_core.utilities as utilities
from fabric_core.utilities.apply_func import convert_tensors_to_scalars
from fabric_core.utilities.distributed import is_shared_filesystem
from fabric_core.utilities.enums import CaseInsensitiveEnum, LightningEnum
from fabric_core.utilities.rank_zero import (
    FabricDeprecationWarning,
    LightningDeprecationWarning,
    WarningCache,
    rank_prefixed_message,
    rank_zero_debug,
    rank_zero_deprecation,
    rank_zero_info,
    rank_zero_only,
    rank_zero_state,
    rank_zero_warn,
)
from fabric_core.utilities.warnings import PossibleUserWarning, disable_possible_user_warnings

# lightning.fabric.utilities.__all__ in Lightning 2.6.6 (Lightning is not installed in the test environment)
LIGHTNING_EXPORTS = {
    "disable_possible_user_warnings",
    "is_shared_filesystem",
    "LightningEnum",
    "measure_flops",
    "move_data_to_device",
    "rank_zero_deprecation",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "suggested_max_num_workers",
    "AttributeDict",
    "Throughput",
    "ThroughputMonitor",
}
# helpers Lightning keeps in its submodules (or in lightning.fabric), exported at the package level here
OUR_EXTRA_EXPORTS = {
    "PossibleUserWarning",
    "SpikeDetection",
    "TrainingSpikeException",
    "get_available_flops",
    "get_filesystem",
    "has_iterable_dataset",
    "has_len",
    "is_wrapped",
    "pl_worker_init_function",
    "rank_zero_debug",
    "reset_seed",
    "seed_everything",
    "sized_len",
    "worker_init_function",
}


def python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()


# -- the exports ------------------------------------------------------------------------------------


def test_the_package_exports_lightnings_names_and_ours():
    assert set(utilities.__all__) == LIGHTNING_EXPORTS | OUR_EXTRA_EXPORTS
    assert len(utilities.__all__) == len(set(utilities.__all__))


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("AttributeDict", "fabric_core.utilities.data"),
        ("Throughput", "fabric_core.utilities.throughput"),
        ("ThroughputMonitor", "fabric_core.utilities.throughput"),
        ("measure_flops", "fabric_core.utilities.throughput"),
        ("SpikeDetection", "fabric_core.utilities.spike"),
        ("move_data_to_device", "fabric_core.utilities.apply_func"),
        ("rank_zero_only", "fabric_core.utilities.rank_zero"),
        ("is_wrapped", "fabric_core.wrappers"),
        ("pl_worker_init_function", "fabric_core.utilities.seed"),
        ("disable_possible_user_warnings", "fabric_core.utilities.warnings"),
        ("is_shared_filesystem", "fabric_core.utilities.distributed"),
        ("LightningEnum", "fabric_core.utilities.enums"),
    ],
)
def test_each_export_is_the_object_of_its_module(name, module):
    assert getattr(utilities, name) is getattr(importlib.import_module(module), name)


def test_every_export_resolves_and_is_listed_by_dir():
    for name in utilities.__all__:
        assert getattr(utilities, name) is not None
    assert set(utilities.__all__) <= set(dir(utilities))


def test_from_import_works_for_every_export():
    namespace: dict = {}
    exec(f"from fabric_core.utilities import {', '.join(utilities.__all__)}", namespace)
    assert set(utilities.__all__) <= set(namespace)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'Trainer'"):
        utilities.Trainer  # noqa: B018
    with pytest.raises(ImportError):
        exec("from fabric_core.utilities import Trainer", {})


# -- cheap imports ------------------------------------------------------------------------------------


def test_importing_the_package_imports_no_utility_module_and_no_torch():
    out = python(
        "import sys, fabric_core, fabric_core.utilities\n"
        "print(sorted(m for m in sys.modules if m.startswith('fabric_core')), 'torch' in sys.modules)"
    )
    modules = ["fabric_core", "fabric_core.__about__", "fabric_core.utilities", "fabric_core.utilities.imports"]
    assert out == f"{modules} False"


@pytest.mark.parametrize(
    "module",
    [
        "fabric_core.utilities.throughput",
        "fabric_core.utilities.spike",
        "fabric_core.utilities.cloud_io",
        "fabric_core.utilities.data",
        "fabric_core.utilities.seed",
    ],
)
def test_a_utility_module_does_not_import_heavy_optional_modules(module):
    # (numpy is not in the list: torch imports it itself)
    heavy = ["fsspec", "torch.utils.flop_counter", "torch._dynamo", "fabric_core.fabric", "fabric_core.wrappers"]
    out = python(f"import sys, {module}\nprint([m for m in {heavy!r} if m in sys.modules])")
    assert out == "[]"


def test_one_name_imports_only_its_own_module():
    out = python(
        "import sys\nfrom fabric_core.utilities import AttributeDict\n"
        "print(sorted(m for m in sys.modules if m.startswith('fabric_core.utilities.')))"
    )
    modules = ["data", "imports", "rank_zero", "seed"]  # data's own imports
    assert out == str([f"fabric_core.utilities.{name}" for name in modules])


# -- rank_zero --------------------------------------------------------------------------------------------


def test_rank_zero_only_rank_reads_and_sets_the_process_rank():
    rank_zero_only.rank = 3  # the root conftest restores it
    assert rank_zero_state.rank == 3
    rank_zero_state.rank = 0
    assert rank_zero_only.rank == 0


def test_rank_zero_only_returns_the_default_on_other_ranks():
    calls = []
    record = rank_zero_only(lambda value: calls.append(value) or "done", default="skipped")
    assert record(1) == "done"
    rank_zero_state.rank = 1
    assert record(2) == "skipped"
    assert rank_zero_only(lambda: "done")() is None
    assert calls == [1]


def test_rank_zero_only_keeps_the_function_name():
    @rank_zero_only
    def save_report():
        """Docs."""

    assert save_report.__name__ == "save_report" and save_report.__doc__ == "Docs."


def test_rank_zero_warn_points_at_the_caller_and_takes_a_category():
    with pytest.warns(PossibleUserWarning, match="check this") as record:
        rank_zero_warn("check this", category=PossibleUserWarning)
    assert record[0].filename == __file__


def test_rank_zero_warn_is_silent_on_other_ranks():
    rank_zero_state.rank = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rank_zero_warn("not shown")
        rank_zero_deprecation("not shown")


def test_rank_zero_deprecation_is_a_fabric_deprecation_warning_at_the_caller():
    with pytest.warns(FabricDeprecationWarning, match="old_name") as record:
        rank_zero_deprecation("old_name() is deprecated")
    assert record[0].filename == __file__
    assert issubclass(FabricDeprecationWarning, DeprecationWarning)
    assert LightningDeprecationWarning is FabricDeprecationWarning


def test_fabric_deprecation_warnings_are_shown_outside_main_by_default():
    out = python(
        "import warnings, fabric_core.utilities.rank_zero as rz\n"
        "print(warnings.filters[0][0], warnings.filters[0][2] is rz.FabricDeprecationWarning)"
    )
    assert out == "default True"


def test_rank_zero_info_and_debug_log_under_fabric_core_on_rank_zero_only(caplog):
    with caplog.at_level(logging.DEBUG, logger="fabric_core"):
        rank_zero_info("epoch %d", 3)
        rank_zero_debug("sizes %s", [1])
        rank_zero_state.rank = 1
        rank_zero_info("hidden")
        rank_zero_debug("hidden")
    assert [(r.levelname, r.getMessage(), r.name) for r in caplog.records] == [
        ("INFO", "epoch 3", "fabric_core.utilities.rank_zero"),
        ("DEBUG", "sizes [1]", "fabric_core.utilities.rank_zero"),
    ]
    assert {r.filename for r in caplog.records} == {Path(__file__).name}


def test_rank_prefixed_message():
    assert rank_prefixed_message("hello", 2) == "[rank: 2] hello"
    assert rank_prefixed_message("hello", None) == "hello"


def test_warning_cache_warns_once_per_message():
    cache = WarningCache()
    with pytest.warns(UserWarning) as record:
        for _ in range(3):
            cache.warn("once")
        cache.warn("twice")
    assert [str(w.message) for w in record] == ["once", "twice"]
    assert record[0].filename == __file__


# -- warnings -----------------------------------------------------------------------------------------------


def test_possible_user_warning_is_a_user_warning():
    assert issubclass(PossibleUserWarning, UserWarning)


def test_disable_possible_user_warnings_silences_them_only():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        disable_possible_user_warnings()
        warnings.warn("quiet", PossibleUserWarning, stacklevel=1)
        warnings.warn("loud", UserWarning, stacklevel=1)
    assert [str(w.message) for w in record] == ["loud"]


def test_disable_possible_user_warnings_for_one_module():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        disable_possible_user_warnings("some_library")
        warnings.warn_explicit("from there", PossibleUserWarning, "x.py", 1, module="some_library.data")
        warnings.warn_explicit("from here", PossibleUserWarning, "y.py", 1, module="my_project")
    assert [str(w.message) for w in record] == ["from here"]


# -- LightningEnum ------------------------------------------------------------------------------------------


class Mode(LightningEnum):
    TRAIN = "train"
    EVAL_ONLY = "Eval-Only"


def test_lightning_enum_is_our_case_insensitive_enum():
    assert LightningEnum is CaseInsensitiveEnum


def test_members_equal_their_value_in_any_case():
    assert Mode.TRAIN == "TRAIN"
    assert Mode.EVAL_ONLY == "eval-only"
    assert Mode.TRAIN != "eval"
    assert (Mode.TRAIN != "Train") is False  # != agrees with ==, not with str's case-sensitive !=


def test_members_hash_by_their_lower_cased_value():
    assert hash(Mode.EVAL_ONLY) == hash("eval-only")
    assert "eval-only" in {Mode.EVAL_ONLY}


@pytest.mark.parametrize(
    ("value", "source", "member"),
    [
        ("train", "key", Mode.TRAIN),
        ("eval_only", "key", Mode.EVAL_ONLY),
        ("Eval-Only", "value", Mode.EVAL_ONLY),
        ("Eval-Only", "any", Mode.EVAL_ONLY),
        ("EVAL_ONLY", "any", Mode.EVAL_ONLY),
    ],
)
def test_from_str(value, source, member):
    assert Mode.from_str(value, source=source) is member


def test_from_str_without_a_match_lists_the_accepted_strings():
    with pytest.raises(ValueError, match=r"'test' is not a Mode: expected one of \['TRAIN', 'EVAL_ONLY'\]"):
        Mode.from_str("test")
    with pytest.raises(ValueError, match=r"expected one of \['train', 'Eval-Only'\]"):
        Mode.from_str("eval-only", source="value")  # values match exactly


def test_try_from_str_warns_and_gives_none():
    with pytest.warns(UserWarning, match="'test' is not a Mode"):
        assert Mode.try_from_str("test") is None
    assert Mode.try_from_str("train") is Mode.TRAIN


# -- is_shared_filesystem, convert_tensors_to_scalars ------------------------------------------------------


class OneProcess:
    world_size = 1


def test_one_process_always_shares_its_filesystem(tmp_path):
    assert is_shared_filesystem(OneProcess(), tmp_path) is True


def test_a_remote_url_counts_as_shared():
    assert is_shared_filesystem(types.SimpleNamespace(world_size=2), "s3://bucket/run") is True


class TwoRanksOnOneMachine:
    """Rank 0 of two whose other rank agrees with every decision (the same machine)."""

    world_size = 2
    is_global_zero = True

    def broadcast(self, obj, src=0):
        return obj

    def barrier(self, name=None):
        pass

    def reduce_boolean_decision(self, decision, all=True):
        return decision


def test_a_directory_seen_by_every_rank_is_shared_and_the_marker_is_removed(tmp_path):
    assert is_shared_filesystem(TwoRanksOnOneMachine(), tmp_path) is True
    assert list(tmp_path.iterdir()) == []


def test_a_file_checks_its_directory(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"")
    assert is_shared_filesystem(TwoRanksOnOneMachine(), tmp_path / "ckpt.pt") is True


def test_a_path_missing_somewhere_cannot_be_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist on every rank"):
        is_shared_filesystem(TwoRanksOnOneMachine(), tmp_path / "missing")


def test_a_rank_that_never_sees_the_marker_means_not_shared(tmp_path):
    strategy = TwoRanksOnOneMachine()
    strategy.is_global_zero = False  # "rank 1": nobody creates the marker for it
    assert is_shared_filesystem(strategy, tmp_path, timeout=0) is False


def test_convert_tensors_to_scalars():
    assert convert_tensors_to_scalars({"loss": torch.tensor(0.5), "n": [torch.tensor(3)], "s": "x"}) == {
        "loss": 0.5,
        "n": [3],
        "s": "x",
    }
    with pytest.raises(ValueError, match=r"shape \(2,\) has 2 elements"):
        convert_tensors_to_scalars(torch.ones(2))


def test_the_top_level_package_exports_lightning_fabrics_names():
    import fabric_core
    from fabric_core.utilities.warnings import disable_possible_user_warnings
    from fabric_core.wrappers import is_wrapped

    # lightning.fabric.__all__ is ["Fabric", "seed_everything", "is_wrapped"]; disable_possible_user_warnings
    # is importable from it too.
    assert {"Fabric", "seed_everything", "is_wrapped"} <= set(fabric_core.__all__)
    assert fabric_core.is_wrapped is is_wrapped
    assert fabric_core.disable_possible_user_warnings is disable_possible_user_warnings


@pytest.mark.parametrize(("value", "shown"), [("0", 0), ("off", 0), ("OFF", 0), ("1", 1), ("", 1)])
def test_possible_user_warnings_env_switch_silences_them(value, shown):
    code = (
        "import warnings\n"
        "from fabric_core.utilities.warnings import PossibleUserWarning\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.warn('maybe', PossibleUserWarning)\n"
        "print(len(seen))\n"
    )
    env = {**os.environ, "POSSIBLE_USER_WARNINGS": value}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(shown)


def _porting_guide_utilities() -> list[tuple[str, list[str]]]:
    """``(fabric-core module, names)`` for each row of docs/porting.md's "Utilities" table."""
    guide = Path(__file__).resolve().parents[3] / "docs" / "porting.md"
    section = guide.read_text(encoding="utf-8").split("## Utilities\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `lightning.fabric."):
            continue
        lightning_cell, ours_cell = [cell.strip() for cell in line.strip("|").split("|")]
        if ":" not in lightning_cell:
            continue
        module = ours_cell.split("`")[1]
        rows.append((module, re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", lightning_cell.split(":", 1)[1])))
    return rows


def test_every_name_the_porting_guide_lists_exists_in_its_module():
    rows = _porting_guide_utilities()
    assert len(rows) >= 9, rows
    missing = [
        f"{module}.{name}"
        for module, names in rows
        for name in names
        if not hasattr(importlib.import_module(module), name)
    ]
    assert not missing, f"docs/porting.md lists names fabric-core lacks: {missing}"
