"""DeepSpeed ZeRO stages 2 and 3, two processes on CPU (gloo): fabric-core against DeepSpeed's engine by hand.

One pair of processes (``deepspeed_train.py``, rank 1 started by ``fabric.launch()``) holds, for each
stage, a hand-driven DeepSpeed engine ("raw": ``deepspeed.initialize`` with the config dict the strategy
produced, ``engine.backward``, ``engine.step``) and a fabric-core ``Fabric(strategy=DeepSpeedStrategy(
stage=N))`` set up with the same MLP and AdamW, all over one process group. Every chunk of steps runs in
those same processes, so a slow spell of the machine lands on both candidates alike: a round is
``PARTS`` passes over the four stage/candidate tasks (rotated order), each task running a part of its
chunk per pass, and a task's fastest pass counts, as in the step workload; each candidate holds
``REPLICAS`` copies per stage, set up in mirrored order, and each pass runs on the next copy. Ratio:
fabric_core's time per step / raw's of the same round (target <= 1.03).

Lightning's DeepSpeed strategy runs on CUDA only, and Accelerate is not part of this comparison: their
rows say so. The module is not called ``deepspeed.py``: the ranks run as a script from this folder, where
that name would hide the deepspeed package.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from tools.bench.common import (
    BenchError,
    Context,
    Target,
    Worker,
    alternate,
    best_of_groups,
    clean_env,
    close_all,
    table,
)

SCRIPT = Path(__file__).with_name("deepspeed_train.py")
STAGES = (2, 3)
CANDIDATES = ("raw", "fabric_core")
FULL = {"dims": [128, 256, 256, 10], "batch": 32}
QUICK = {"dims": [16, 32, 4], "batch": 8}
CHUNK_S = 0.6  # raw time of one task's chunk per round, split over PARTS passes
PARTS = 10
REPLICAS = 2  # copies of each candidate per stage, set up in mirrored order; pass i runs copy i % REPLICAS
PROBE_STEPS, MIN_STEPS, QUICK_STEPS = 10, 2, 2
TARGET = Target(on="ratio", op="<=", limit=1.03, text="<= 1.03x raw")
START_TIMEOUT_S, CHUNK_TIMEOUT_S = 300, 120
WORLD_SIZE = 2
LABELS = {"raw": "DeepSpeed by hand"}
NOTES = {
    "raw": "deepspeed.initialize(model, optimizer, config=<the strategy's config>), engine.backward, engine.step",
    "lightning": "not measured: Lightning's DeepSpeedStrategy runs on CUDA GPUs only",
    "accelerate": "not measured: this workload compares fabric-core with DeepSpeed's own engine",
}


def _skipped(reason: str) -> list[dict]:
    return [{"id": f"deepspeed-stage{s}", "title": _title(s), "skipped": reason, "rows": []} for s in STAGES]


def _title(stage: int) -> str:
    return f"DeepSpeed ZeRO stage {stage}, 2 processes on CPU (gloo): training step"


def run(ctx: Context) -> list[dict]:
    if importlib.util.find_spec("fabric_deepspeed") is None or importlib.util.find_spec("deepspeed") is None:
        return _skipped('fabric-deepspeed is not installed: pip install "fabric-core[deepspeed]"')
    replicas = 1 if ctx.quick else REPLICAS
    config = dict(QUICK if ctx.quick else FULL, stages=list(STAGES), replicas=replicas)
    config["candidates"] = [name for name in CANDIDATES if name in ctx.candidates]
    rounds, warmup = ctx.rounds_for(30, 1), (0 if ctx.quick else 2)
    parts = 1 if ctx.quick else PARTS
    tasks = [f"{stage}/{name}" for stage in STAGES for name in config["candidates"]]
    errors: dict[str, str] = {}
    samples: dict[str, list[float]] = {}
    steps = {stage: QUICK_STEPS for stage in STAGES}
    if tasks:
        ctx.log(f"deepspeed: starting two ranks holding {', '.join(tasks)}")
        command = [sys.executable, str(SCRIPT), json.dumps(config)]
        worker = Worker("deepspeed", "deepspeed ranks", config, clean_env(threads=1), command=command)
        try:
            worker.receive(START_TIMEOUT_S)
            if not ctx.quick:
                for stage in STAGES:
                    steps[stage] = _part_steps(worker, f"{stage}/{config['candidates'][0]}", parts)

            def once(task: str, index: int) -> float:
                n = steps[int(task.split("/")[0])]
                message = {"cmd": "chunk", "task": task, "replica": index, "steps": n}
                return worker.ask(message, CHUNK_TIMEOUT_S)["seconds"] / n * 1e3

            ctx.log(f"deepspeed: {warmup} warm-up + {rounds} rounds of {parts} passes, steps per pass {steps}")
            by_pass = alternate(tasks, rounds * parts, warmup * parts, once, errors, pass_index=True)
            samples = {task: best_of_groups(values, parts) for task, values in by_pass.items() if values}
        except BenchError as err:
            errors.update(dict.fromkeys(tasks, str(err)))
        finally:
            close_all([worker])
    shape = {"rounds": rounds, "warmup_rounds": warmup, "passes_per_round": parts, "model_copies": replicas}
    return [_stage_table(ctx, stage, samples, errors, shape, steps[stage]) for stage in STAGES]


def _part_steps(worker: Worker, task: str, parts: int) -> int:
    """Steps per pass so that a round's ``parts`` passes take about CHUNK_S of this task's time."""
    for _ in range(2):  # the first probe warms up, the second sizes the passes
        seconds = worker.ask({"cmd": "chunk", "task": task, "steps": PROBE_STEPS}, CHUNK_TIMEOUT_S)["seconds"]
    return max(MIN_STEPS, round(CHUNK_S / parts / (seconds / PROBE_STEPS)))


def _stage_table(
    ctx: Context,
    stage: int,
    samples: dict[str, list[float]],
    errors: dict[str, str],
    shape: dict[str, int],
    part_steps: int,
) -> dict:
    prefix = f"{stage}/"
    return table(
        ctx,
        id=f"deepspeed-stage{stage}",
        title=_title(stage),
        unit="ms/step",
        samples={task[len(prefix) :]: values for task, values in samples.items() if task.startswith(prefix)},
        errors={task[len(prefix) :]: text for task, text in errors.items() if task.startswith(prefix)},
        ratio="cand/raw",
        target=TARGET,
        about=(
            f"Time per training step (zero_grad, forward, cross-entropy, backward, optimizer step) of ZeRO stage "
            f"{stage}, measured by rank 0 between barriers; both candidates live in the same two processes and "
            f"share one process group. A round is {shape['passes_per_round']} passes over the stage 2 and 3 "
            f"candidates (rotated order), each running {part_steps} steps per pass, and a candidate's fastest pass "
            f"counts; each candidate has {shape['model_copies']} copies of the model per stage, set up in mirrored "
            "order, and each pass runs on the next one; median, min and max over the rounds; ratio = fabric_core / "
            "DeepSpeed's engine driven by hand, same round."
        ),
        params={
            "stage": stage,
            **shape,
            "steps_per_pass": part_steps,
            "world_size": WORLD_SIZE,
            "omp_num_threads": 1,
            "optimizer": "AdamW",
            "precision": "32-true",
            **(QUICK if ctx.quick else FULL),
        },
        notes=NOTES,
        labels=LABELS,
    )
