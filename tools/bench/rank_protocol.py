"""The rank side of the multi-process workloads' protocol (ddp_train.py, deepspeed_train.py).

Rank 0 reads one JSON command per line from its stdin (the driver) and broadcasts it to every rank:
``{"cmd": "chunk", "steps": N, ...}`` runs N steps between two barriers and rank 0 answers
``{"seconds": ...}`` on ``protocol``; anything else (or end of input) ends the loop. A plain module
beside the scripts, which run with this folder on their path.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import torch.distributed as dist


def serve(protocol: TextIO, choose_step: Callable[[dict[str, Any]], Callable[[], None]]) -> None:
    """Announce readiness, then time chunks of ``choose_step(command)()`` until the driver says stop."""
    rank = dist.get_rank()
    if rank == 0:
        protocol.write(json.dumps({"ready": True, "world_size": dist.get_world_size()}) + "\n")
    while True:
        message: list[Any] = [None]
        if rank == 0:
            line = sys.stdin.readline()
            message = [json.loads(line) if line else {"cmd": "exit"}]
        dist.broadcast_object_list(message, src=0)
        if message[0]["cmd"] != "chunk":
            break
        step = choose_step(message[0])
        dist.barrier()
        start = time.perf_counter()
        for _ in range(message[0]["steps"]):
            step()
        dist.barrier()
        if rank == 0:
            protocol.write(json.dumps({"seconds": time.perf_counter() - start}) + "\n")
    dist.barrier()  # both ranks got the exit: rank 0 may not leave while a broadcast to rank 1 is in flight
