"""The benchmark harness (tools/bench) keeps working: a ``--quick`` run writes the report with the expected shape.

No timing is asserted anywhere: the figures of a quick run (tiny sizes, one or two rounds) mean nothing,
and real figures belong to the report (docs/benchmarks.md), never to a test. The quick run uses the
candidates that are installed; the others (in CI: Lightning and Accelerate) must show as "not installed".
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `tools` is a folder of the repository, not an installed package

from tools.bench import report  # noqa: E402
from tools.bench.common import CANDIDATES  # noqa: E402

# A quick run takes well under a minute on two cores; this bound only stops a hang with its output.
TIMEOUT_S = 240
TABLES = {
    "step": ["step-mlp-32-true", "step-cnn-32-true", "step-mlp-bf16-mixed", "step-cnn-bf16-mixed"],
    "import": ["import-time", "import-memory"],
    "first_fabric": ["first-fabric"],
    "ddp": ["ddp"],
    "deepspeed": ["deepspeed-stage2", "deepspeed-stage3"],
    "checkpoint": ["checkpoint-save", "checkpoint-load"],
}
RATIO_TABLES = {"step-mlp-32-true", "step-cnn-32-true", "step-mlp-bf16-mixed", "step-cnn-bf16-mixed", "ddp",
                "deepspeed-stage2", "deepspeed-stage3", "checkpoint-save", "checkpoint-load"}  # fmt: skip
# Where fabric-deepspeed is missing, the DeepSpeed tables are skipped with the install command instead of rows.
DEEPSPEED_SKIPPED = any(importlib.util.find_spec(name) is None for name in ("fabric_deepspeed", "deepspeed"))
COMPETITORS = {"lightning": "lightning", "accelerate": "accelerate"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "tools.bench", "--quick", "--out", str(out)]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the quick benchmark did not finish in {TIMEOUT_S} s:\n{err.stdout}\n{err.stderr}")
    assert done.returncode == 0, f"exit code {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return json.loads((out / "benchmarks.json").read_text()), (out / "benchmarks.md").read_text()


@pytest.mark.slow
def test_quick_run_writes_json_with_every_workload_and_candidate(quick_run):
    data, _ = quick_run
    meta = data["meta"]
    assert meta["mode"] == "quick"
    for key in ("date", "machine", "os", "python", "commit", "duration_s"):
        assert meta[key], key
    assert set(meta["versions"]) == {"torch", "fabric-core", "lightning", "accelerate"}
    assert list(data["workloads"]) == ["step", "import", "first_fabric", "ddp", "deepspeed", "checkpoint", "gpu"]

    for workload, table_ids in TABLES.items():
        tables = data["workloads"][workload]["tables"]
        assert [t["id"] for t in tables] == table_ids, workload
        for found in tables:
            if workload == "deepspeed" and DEEPSPEED_SKIPPED:
                assert "fabric-deepspeed is not installed" in found["skipped"], found
                continue
            rows = {row["candidate"]: row for row in found["rows"]}
            assert list(rows) == list(CANDIDATES), found["id"]
            for name in ("raw", "fabric_core"):
                row = rows[name]
                assert row["status"] in ("ok", "not applicable"), (found["id"], name, row)
                if row["status"] == "ok":
                    assert row["min"] <= row["median"] <= row["max"]
                    assert all(math.isfinite(value) for value in row["samples"]), (found["id"], name)
            fabric = rows["fabric_core"]
            assert fabric["target"] and isinstance(fabric["met"], bool), (found["id"], fabric)
            if found["id"] in RATIO_TABLES:
                assert fabric["ratio"]["min"] <= fabric["ratio"]["median"] <= fabric["ratio"]["max"]
                assert len(fabric["ratio"]["samples"]) == len(fabric["samples"])
            for name, package in COMPETITORS.items():
                if importlib.util.find_spec(package) is None:
                    assert rows[name]["status"] == "not installed", (found["id"], rows[name])
                else:
                    assert rows[name]["status"] in ("ok", "error", "not applicable"), (found["id"], rows[name])

    gpu = data["workloads"]["gpu"]["tables"]
    assert gpu, "the GPU section is always present"
    if gpu[0].get("skipped"):
        assert gpu[0]["skipped"] == "no GPU in this session"


@pytest.mark.slow
def test_quick_run_writes_markdown_tables(quick_run):
    data, markdown = quick_run
    assert markdown.startswith("# Benchmarks\n")
    for label in ("| date |", "| machine |", "| OS |", "| Python |", "| torch |", "| fabric-core |", "| lightning |",
                  "| accelerate |", "## fabric_core against its targets"):  # fmt: skip
        assert label in markdown, label
    header = "| candidate | median | min | max | ratio vs raw (median [min\u2013max]) | target | met? |"
    skipped = len(TABLES["deepspeed"]) if DEEPSPEED_SKIPPED else 0
    assert markdown.count(header) == sum(len(ids) for ids in TABLES.values()) - skipped
    for workload in data["workloads"].values():
        for found in workload["tables"]:
            assert f"### {found['title']}" in markdown
    for name, package in COMPETITORS.items():
        if importlib.util.find_spec(package) is None:
            assert f"| {report.NAMES[name]} | not installed |" in markdown
    assert "hatch run bench:run" in markdown


def test_gpt_model_trains_one_step_on_cpu_raw_and_fabric_core():
    """The GPU workload's model and step, tiny and on the CPU (CI has no GPU)."""
    import torch
    from tools.bench.step import build, training_step

    spec = {"batch": 2, "seq": 8, "d": 16, "layers": 2, "heads": 2, "vocab": 32}
    for candidate in ("raw", "fabric_core"):
        model, x, y = build("gpt", spec, torch.device("cpu"))
        before = [p.detach().clone() for p in model.parameters()]
        step = training_step(candidate, "bf16-mixed", torch.device("cpu"), model, x, y)
        step()
        assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters())), candidate
    assert model(x).shape == (2, 8, 32)


def test_only_some_workloads_keeps_the_others_in_the_report(tmp_path):
    def result(title: str) -> dict:
        return {"meta": {"title": title, "date": "d", "machine": "m", "duration_s": 1.0}, "tables": []}

    meta = {"date": "d", "machine": "m", "os": "o", "python": "p", "versions": {"torch": "t"}, "fabric_plugins": [],
            "commit": "c", "mode": "full", "duration_s": 1.0, "command": "x", "threads": 1}  # fmt: skip
    report.write(tmp_path, meta, {"step": result("Step"), "ddp": result("DDP")}, merge=False)
    report.write(tmp_path, dict(meta, date="later"), {"gpu": result("GPU")}, merge=True)
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    assert list(data["workloads"]) == ["step", "ddp", "gpu"]
    markdown = (tmp_path / "benchmarks.md").read_text()
    assert "## Step" in markdown and "## GPU" in markdown and "_Measured d on m._" in markdown


def test_unknown_workload_is_refused():
    from tools.bench.run import main

    with pytest.raises(SystemExit, match="unknown workload nope"):
        main(["--only", "nope", "--quiet"])
