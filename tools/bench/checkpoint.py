"""Checkpoint save and load of a ~200 MB model against plain ``torch.save`` / ``torch.load``.

The model is 50 bias-free ``Linear(1024, 1024)`` layers in float32 (209.7 MB of weights). One persistent
worker per candidate holds it; each round, one candidate at a time (rotated order) saves it to a fresh
file in one temporary directory (one filesystem for all), loads it back into the model, and the file is
deleted; REPEATS times, the fastest save and the fastest load counting for the round. Then the next
candidate runs. Between the save and the load the driver calls ``os.sync()``
(untimed), so that a plain save's deferred write-back does not slow down its own load or the next
candidate's save: every load reads a clean, cached file.

- raw: ``torch.save(model.state_dict(), path)``; ``model.load_state_dict(torch.load(path))``
- fabric_core / lightning: ``fabric.save(path, {"model": model})``; ``fabric.load(path, {"model": model})``
  on a model passed through ``fabric.setup``. fabric_core writes atomically (temporary file, rename) and
  flushes the file to disk in a background thread after the rename; the ``os.sync()`` below waits for
  that write-back as it does for ``torch.save``'s, untimed for both.
- accelerate: ``accelerator.save_state(dir)``; ``accelerator.load_state(dir)``, its checkpoint API (a
  directory with safetensors weights and RNG states).

Ratios are raw time / candidate time of the same round: 1.0 is as fast as torch, the target is >= 0.95.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tools.bench.common import Context, Target, alternate, clean_env, close_all, start_workers, table

FULL = {"layers": 50, "width": 1024}
QUICK = {"layers": 4, "width": 256}
TARGET = Target(on="ratio", op=">=", limit=0.95, text=">= 0.95x raw")
REPEATS = 3  # save + load pairs per candidate and round; the round's values are the fastest save and load
START_TIMEOUT_S = 300
OP_TIMEOUT_S = 300


# -- worker side -----------------------------------------------------------------------------------


def make_task(candidate: str, config: dict) -> Callable[[dict], dict]:
    import torch
    from torch import nn

    torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    width = config["width"]
    model = nn.Sequential(*(nn.Linear(width, width, bias=False) for _ in range(config["layers"])))
    if candidate == "raw":

        def save(path: str) -> None:
            torch.save(model.state_dict(), path)

        def load(path: str) -> None:
            model.load_state_dict(torch.load(path))

    elif candidate in ("fabric_core", "lightning"):
        if candidate == "fabric_core":
            from fabric_core import Fabric
        else:
            from lightning.fabric import Fabric
        fabric = Fabric(accelerator="cpu", devices=1)
        wrapped = fabric.setup(model)

        def save(path: str) -> None:
            fabric.save(path, {"model": wrapped})

        def load(path: str) -> None:
            fabric.load(path, {"model": wrapped})

    elif candidate == "accelerate":
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=True)
        model = accelerator.prepare(model)
        save, load = accelerator.save_state, accelerator.load_state
    else:
        raise ValueError(f"unknown candidate {candidate!r}")

    def timed(message: dict) -> dict:
        operation = save if message["cmd"] == "save" else load
        start = time.perf_counter()
        operation(message["path"])
        return {"seconds": time.perf_counter() - start}

    return timed


# -- driver side -----------------------------------------------------------------------------------


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def run(ctx: Context) -> list[dict]:
    spec = QUICK if ctx.quick else FULL
    rounds, warmup = ctx.rounds_for(10, 2), (0 if ctx.quick else 1)
    repeats = 1 if ctx.quick else REPEATS
    size_mb = spec["layers"] * spec["width"] ** 2 * 4 / 1e6
    errors: dict[str, str] = {}
    ctx.log(f"checkpoint: {size_mb:.1f} MB model, {warmup} warm-up + {rounds} rounds")
    config = dict(spec, threads=ctx.threads)
    workers = start_workers("checkpoint", ctx.candidates, config, clean_env(ctx.threads), START_TIMEOUT_S, errors)
    directory = Path(tempfile.mkdtemp(prefix="fabric-bench-ckpt-", dir=ctx.tmp_dir))
    counter = iter(range(10**9))
    try:

        def once(name: str) -> tuple[float, float]:
            saves, loads = [], []
            for _ in range(repeats):
                path = directory / f"{name}-{next(counter)}.ckpt"
                try:
                    saves.append(workers[name].ask({"cmd": "save", "path": str(path)}, OP_TIMEOUT_S)["seconds"])
                    os.sync()  # untimed: no save's deferred write-back slows the load or the next candidate's save
                    loads.append(workers[name].ask({"cmd": "load", "path": str(path)}, OP_TIMEOUT_S)["seconds"])
                finally:
                    _remove(path)
            return min(saves), min(loads)

        samples = alternate(list(workers), rounds, warmup, once, errors)
    finally:
        close_all(workers.values())
        shutil.rmtree(directory, ignore_errors=True)
    filesystem = _filesystem(directory)
    params = dict(
        spec, size_mb=round(size_mb, 1), rounds=rounds, warmup_rounds=warmup, repeats=repeats, filesystem=filesystem
    )
    notes = {"accelerate": "save_state()/load_state(): a directory, safetensors"}
    tables = []
    for index, what in enumerate(("save", "load")):
        values = {name: [pair[index] for pair in pairs] for name, pairs in samples.items()}
        tables.append(
            table(
                ctx,
                id=f"checkpoint-{what}",
                title=f"Checkpoint {what}, {size_mb:.0f} MB model",
                unit="s",
                samples=values,
                errors=errors,
                ratio="raw/cand",
                target=TARGET,
                notes=notes,
                about=f"Seconds per {what} (lower is better): in each round every candidate saves and loads "
                f"{repeats} time(s) and its fastest {what} counts; ratio = raw torch time / candidate time of the "
                f"same round (higher is better). Files on {filesystem}.",
                params=params,
            )
        )
    return tables


def _filesystem(path: Path) -> str:
    """The mount point and filesystem type holding ``path`` (Linux), for the report."""
    best = ("", "unknown")
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                mount, kind = fields[1], fields[2]
                if str(path).startswith(mount.rstrip("/") + "/") and len(mount) > len(best[0]):
                    best = (mount, kind)
    except OSError:
        pass
    return f"{best[1]} ({best[0] or '?'}, under {os.path.dirname(path)})"
