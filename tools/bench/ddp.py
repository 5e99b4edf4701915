"""Two-process DDP throughput on CPU (gloo): samples per second of each candidate against raw DDP.

Each candidate's two ranks (``ddp_train.py``) stay up for the whole workload and are asked in turn, like
the step workers: each round, one candidate at a time (rotated order) runs a chunk of training steps
between two barriers while the other candidates' ranks wait idle. Start-up and the launchers do not
count. raw and accelerate get a torchrun-like environment from this driver (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...), which starts both of their ranks; fabric_core and Lightning start their second rank
themselves with ``fabric.launch()``. Every process runs with ``OMP_NUM_THREADS=1`` (two processes, two
cores). Ratio: candidate samples/s / raw samples/s of the same round (target >= 0.98).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tools.bench.common import (
    ROOT,
    BenchError,
    Context,
    Target,
    Worker,
    alternate,
    clean_env,
    close_all,
    table,
)

SCRIPT = Path(__file__).with_name("ddp_train.py")
FULL = {"dims": [512, 1024, 1024, 10], "batch": 64}
QUICK = {"dims": [32, 64, 10], "batch": 16}
CHUNK_S, QUICK_STEPS, PROBE_STEPS = 1.0, 2, 5
TARGET = Target(on="ratio", op=">=", limit=0.98, text=">= 0.98x raw")
START_TIMEOUT_S, CHUNK_TIMEOUT_S = 300, 120
WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(candidate: str, config: dict) -> Worker:
    """Start the candidate's two ranks; the returned worker talks to rank 0."""
    command = [sys.executable, str(SCRIPT), candidate, json.dumps(config)]
    env = clean_env(threads=1)
    if candidate not in ("raw", "accelerate"):
        return Worker("ddp", candidate, config, env, command=command)  # fabric.launch() starts rank 1
    shared = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(WORLD_SIZE))
    worker = Worker("ddp", candidate, config, dict(env, **shared, RANK="0", LOCAL_RANK="0"), command=command)
    for rank in range(1, WORLD_SIZE):
        worker.companions.append(subprocess.Popen(
            command, cwd=ROOT, env=dict(env, **shared, RANK=str(rank), LOCAL_RANK=str(rank)),
            stdin=subprocess.DEVNULL, stdout=worker._stderr, stderr=subprocess.STDOUT, start_new_session=True,
        ))  # fmt: skip
    return worker


def run(ctx: Context) -> list[dict]:
    config = QUICK if ctx.quick else FULL
    rounds, warmup = ctx.rounds_for(20, 1), (0 if ctx.quick else 2)
    errors: dict[str, str] = {}
    ctx.log(f"ddp: starting two ranks for each of {', '.join(ctx.candidates)}")
    started = {name: start(name, config) for name in ctx.candidates}
    workers = {}
    try:
        for name, worker in started.items():
            try:
                worker.receive(START_TIMEOUT_S)
                workers[name] = worker
            except BenchError as err:
                errors[name] = str(err)
        steps = QUICK_STEPS
        if "raw" in workers and not ctx.quick:
            try:
                for _ in range(2):  # the first probe warms up, the second sizes the chunks
                    probe = workers["raw"].ask({"cmd": "chunk", "steps": PROBE_STEPS}, CHUNK_TIMEOUT_S)["seconds"]
                steps = max(2, round(CHUNK_S / (probe / PROBE_STEPS)))
            except BenchError as err:
                errors["raw"] = str(err)
        samples_per_chunk = steps * config["batch"] * WORLD_SIZE

        def once(name: str) -> float:
            return samples_per_chunk / workers[name].ask({"cmd": "chunk", "steps": steps}, CHUNK_TIMEOUT_S)["seconds"]

        ctx.log(f"ddp: {warmup} warm-up + {rounds} rounds of {steps} steps")
        samples = alternate(list(workers), rounds, warmup, once, errors)
    finally:
        close_all(started.values())
    return [table(
        ctx, id="ddp", title="DDP, 2 processes on CPU (gloo): training throughput", unit="samples/s",
        samples=samples, errors=errors, ratio="cand/raw", target=TARGET,
        about="Samples per second over a chunk of training steps (higher is better); ratio = candidate / raw "
        "DistributedDataParallel with a DistributedSampler, same round.",
        params={"rounds": rounds, "warmup_rounds": warmup, "steps_per_chunk": steps, "world_size": WORLD_SIZE,
                "omp_num_threads": 1, **config},
        notes={"accelerate": "prepare() shards the loader its own way (no DistributedSampler)"},
    )]  # fmt: skip
