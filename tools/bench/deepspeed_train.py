"""The ranks of the DeepSpeed benchmark: ``python tools/bench/deepspeed_train.py CONFIG_JSON``.

Self-contained on purpose (nothing from tools.bench): Fabric's launcher starts the second rank by running
this command line again. ``CONFIG`` holds the MLP's ``dims``, the per-rank ``batch``, the ZeRO ``stages``,
the ``candidates`` ("raw", "fabric_core") and how many ``replicas`` of each to set up. Every replica is the
same model (seed 0) with its own AdamW and this rank's fixed batch:

- fabric_core: ``Fabric(accelerator="cpu", devices=2, strategy=DeepSpeedStrategy(stage=N))``,
  ``fabric.setup(model, optimizer)``; a step is ``optimizer.zero_grad()``, ``fabric.backward(loss)``,
  ``optimizer.step()``. One Fabric per replica and stage: the first one's ``fabric.launch()`` starts
  rank 1 and creates the process group, every later one joins the running processes and that group.
- raw: DeepSpeed's engine driven by hand in the same processes: ``deepspeed.initialize(model, optimizer,
  config=<a copy of the stage's strategy.config>, dist_init_required=False)`` over the same process
  group; a step is ``optimizer.zero_grad()`` on DeepSpeed's optimizer, ``engine.backward(loss)``,
  ``engine.step()``. DeepSpeed is imported with ``fabric_deepspeed.runtime.import_deepspeed``, as the
  strategy does: its CPU accelerator then skips the shared-memory operator that DeepSpeed would compile.

The replicas of a stage are created in mirrored order (raw, fabric_core, fabric_core, raw, ...), so that
neither candidate is always the one set up first.

A persistent worker, like tools/bench/ddp_train.py: rank 0 answers the driver in JSON lines on stdout
(``{"ready": true}`` once everything is set up) and passes every request to rank 1 with a broadcast. For
``{"cmd": "chunk", "task": "2/raw", "replica": I, "steps": N}`` both ranks run N steps of that stage,
candidate and replica (I modulo their number) between two barriers and rank 0 replies
``{"seconds": ...}``; ``{"cmd": "exit"}`` (or the end of stdin) ends both.
"""

from __future__ import annotations

import copy
import gc
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable

import torch
import torch.distributed as dist
from rank_protocol import serve
from torch import nn
from torch.nn.functional import cross_entropy

WORLD_SIZE = 2


def build(config: dict, rank: int) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    """The MLP (the same in every copy), its AdamW and this rank's fixed batch."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(config["dims"]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(1 + rank)
    x = torch.randn(config["batch"], config["dims"][0], generator=generator)
    y = torch.randint(0, config["dims"][-1], (config["batch"],), generator=generator)
    return model, optimizer, x, y


def launched_fabric(stage: int):
    """A launched fabric-core Fabric on the DeepSpeed strategy of ``stage``."""
    from fabric_core import Fabric
    from fabric_deepspeed import DeepSpeedStrategy

    fabric = Fabric(accelerator="cpu", devices=WORLD_SIZE, strategy=DeepSpeedStrategy(stage=stage))
    fabric.launch()
    # Rank 0 now counts as a started process too: the next Fabric joins the running processes instead of
    # starting rank 1 again (rank 1 carries LOCAL_RANK from the launcher already).
    os.environ.setdefault("LOCAL_RANK", str(fabric.local_rank))
    return fabric


def fabric_step(fabric, config: dict) -> Callable[[], None]:
    model, optimizer, x, y = build(config, fabric.global_rank)
    model, optimizer = fabric.setup(model, optimizer)

    def step() -> None:
        optimizer.zero_grad()
        fabric.backward(cross_entropy(model(x), y))
        optimizer.step()

    return step


def raw_step(deepspeed, ds_config: dict, config: dict, engines: list) -> Callable[[], None]:
    model, optimizer, x, y = build(config, dist.get_rank())
    engine, ds_optimizer, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=copy.deepcopy(ds_config), dist_init_required=False
    )
    engines.append(engine)

    def step() -> None:
        ds_optimizer.zero_grad(set_to_none=True)
        engine.backward(cross_entropy(engine(x), y))
        engine.step()

    return step


def main() -> int:
    config = json.loads(sys.argv[1])
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints of the frameworks (and of the rank started from here) go to stderr
    torch.set_num_threads(1)
    from fabric_deepspeed.runtime import import_deepspeed

    deepspeed = import_deepspeed("cpu", logging.WARN)
    fabrics, engines = [], []
    steps: dict[str, list[Callable[[], None]]] = {}
    for stage in config["stages"]:
        # One Fabric per replica, launched before any engine exists (the very first one starts rank 1 and creates
        # the process group); the hand-driven engines get the config their strategy hands to deepspeed.initialize.
        stage_fabrics = [launched_fabric(stage) for _ in range(config["replicas"])]
        fabrics += stage_fabrics
        ds_config = stage_fabrics[0].strategy.config
        for replica, fabric in enumerate(stage_fabrics):
            order = config["candidates"] if replica % 2 == 0 else config["candidates"][::-1]
            for candidate in order:
                if candidate == "fabric_core":
                    step = fabric_step(fabric, config)
                elif candidate == "raw":
                    step = raw_step(deepspeed, ds_config, config, engines)
                else:
                    raise SystemExit(f"unknown candidate {candidate!r}")
                steps.setdefault(f"{stage}/{candidate}", []).append(step)
    torch.set_num_threads(1)  # whatever a framework set: one thread per process, two processes on two cores
    gc.collect()
    gc.freeze()  # what exists now is never collected again: the gc.collect() before each chunk stays cheap

    def choose_step(command: dict) -> Callable[[], None]:
        replicas = steps[command["task"]]
        gc.collect()
        return replicas[command.get("replica", 0) % len(replicas)]

    serve(protocol, choose_step)
    # The hand-driven engines go while the process group still exists (gloo can abort a process at exit
    # otherwise), then each Fabric in reverse order: the first one owns the group and destroys it.
    for engine in engines:
        engine.destroy()
    engines.clear()
    for fabric in reversed(fabrics):
        fabric.teardown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
