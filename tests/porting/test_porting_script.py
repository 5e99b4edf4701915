"""The README's porting claim, shown: a Lightning Fabric script gives the same results once its imports are changed.

tests/porting/lightning_script.py is a training run written for Lightning Fabric (DDP on two CPU
processes, bf16 autocast, gradient accumulation under no_backward_sync, clipping, all_reduce,
a CSV logger, save and load into fresh objects). It runs twice, each time as its user would start it
(``python script.py``; the script's ``fabric.launch()`` starts the second process):

- as it is, with Lightning;
- ported: its imports rewritten by the table of docs/porting.md (tests/porting/port.py), nothing
  else changed, with fabric-core.

Tolerance: none. The losses, gradient norms, metrics and final parameters must be equal bit for bit.
bf16 autocast does not stand in the way: both libraries run the same torch operations under the
same ``torch.autocast("cpu", dtype=torch.bfloat16)`` on float32 parameters, from the same seed, with
the same DistributedSampler order and the same DDP gradient averaging over gloo, and torch on CPU is
deterministic for these operations. Measured: the two runs agree exactly (max abs difference 0.0 in
every loss and parameter), so any difference is a behaviour difference, not rounding.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

pytest.importorskip(
    "lightning.fabric",
    reason="Lightning is not installed here; `hatch run parity:all` runs this against lightning==2.6.6",
)

HERE = Path(__file__).parent
SCRIPT = HERE / "lightning_script.py"

pytestmark = pytest.mark.slow  # two runs of two processes each


@pytest.fixture(scope="module")
def runs(tmp_path_factory, port, run_script) -> dict[str, dict]:
    """The results of the script run with Lightning and, ported, with fabric-core (each in its own folder)."""
    results = {}
    for library in ("lightning", "fabric_core"):
        folder = tmp_path_factory.mktemp(library)
        script = SCRIPT
        if library == "fabric_core":
            script = folder / "train.py"
            script.write_text(port.port_source(SCRIPT.read_text()))
        run = run_script(script, "--out-dir", str(folder), cwd=folder, timeout=180)
        assert run.returncode == 0, f"the script failed with {library} (exit {run.returncode}):\n{run.tail()}"
        result = json.loads((folder / "results.json").read_text())
        result["log_dir"] = str(Path(result["log_dir"]).relative_to(folder))
        result["csv"] = read_csv(folder / result["log_dir"] / "metrics.csv")
        results[library] = result
    return results


def read_csv(path: Path) -> tuple[list[str], list[dict[str, float | None]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [{key: float(value) if value != "" else None for key, value in row.items()} for row in reader]
        return list(reader.fieldnames or []), rows


def max_difference(expected: list[float], actual: list[float]) -> float:
    if len(expected) != len(actual):
        return math.inf
    return max((abs(a - b) for a, b in zip(expected, actual)), default=0.0)


def assert_bit_equal(name: str, expected: list[float], actual: list[float]) -> None:
    assert actual == expected, (
        f"{name}: {len(actual)} values with fabric-core, {len(expected)} with Lightning; "
        f"max abs difference {max_difference(expected, actual)}"
    )


def test_both_runs_used_two_processes(runs):
    assert runs["lightning"]["world_size"] == runs["fabric_core"]["world_size"] == 2


@pytest.mark.parametrize("series", ["micro_batch_loss", "step_loss", "grad_norm", "val_accuracy"])
def test_the_training_curves_are_identical(runs, series):
    expected, actual = runs["lightning"]["history"][series], runs["fabric_core"]["history"][series]
    assert expected, f"the Lightning run recorded no {series}"
    assert_bit_equal(series, expected, actual)


def test_the_final_parameters_are_identical(runs):
    expected, actual = runs["lightning"]["final_parameters"], runs["fabric_core"]["final_parameters"]
    assert list(actual) == list(expected)
    for name in expected:
        assert_bit_equal(name, expected[name], actual[name])
    assert runs["fabric_core"]["final_checksum"] == runs["lightning"]["final_checksum"]


def test_load_restores_the_saved_state_and_returns_the_rest(runs):
    for library in ("lightning", "fabric_core"):
        run = runs[library]
        assert run["loaded_checksum"] == run["saved_checksum"], f"{library}: the loaded model is not the saved one"
    lightning, ours = runs["lightning"], runs["fabric_core"]
    assert ours["saved_checksum"] == lightning["saved_checksum"]
    assert ours["load_returned"] == lightning["load_returned"] == {"epoch": 1, "step": 8}
    assert ours["loaded_optimizer_steps"] == lightning["loaded_optimizer_steps"]


def test_the_csv_logger_writes_the_same_file_in_the_same_place(runs):
    assert runs["fabric_core"]["log_dir"] == runs["lightning"]["log_dir"]
    expected_columns, expected_rows = runs["lightning"]["csv"]
    columns, rows = runs["fabric_core"]["csv"]
    # Lightning writes the columns in alphabetical order; a reader goes by the header's names.
    assert sorted(columns) == sorted(expected_columns)
    assert rows == expected_rows
