"""What the test scripts share: starting Fabric in both processes, and comparing states exactly."""

from __future__ import annotations

import gc
import os
from typing import Any

import torch
import torch.distributed.checkpoint
import torch.distributed.fsdp
import torch.distributed.tensor.parallel
from torch import nn
from torch.distributed.tensor import DTensor

from fabric_core import Fabric

# Every Fabric's teardown runs gc.collect (for DDP's reducer); with torch's few hundred thousand objects
# that takes most of a second here, once per Fabric these scripts create. What is imported by now
# lives for the whole run: keep it out of the collector's way.
gc.freeze()


#: The GPU tests run the same scripts on CUDA devices.
ACCELERATOR = os.environ.get("FABRIC_FSDP_TEST_ACCELERATOR", "cpu")


def launched_fabric(**kwargs: Any) -> Fabric:
    """``Fabric(accelerator=ACCELERATOR, **kwargs)``, launched.

    The first call starts the other process; later calls join the running processes, as they would
    under torchrun (LOCAL_RANK set), and reuse the process group.
    """
    fabric = Fabric(accelerator=ACCELERATOR, **kwargs)
    fabric.launch()
    os.environ.setdefault("LOCAL_RANK", str(fabric.local_rank))
    return fabric


def report(line: str) -> None:
    """Print one line in a single write, so that the two ranks' lines never interleave."""
    print(line + "\n", end="", flush=True)


def full(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.full_tensor() if isinstance(tensor, DTensor) else tensor).detach().clone()


def full_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter of ``module``, whole (a collective for sharded ones: call it on every rank)."""
    return {name: full(p) for name, p in module.named_parameters()}


def assert_same(actual: Any, expected: Any, where: str = "state") -> None:
    """Exact deep equality of nested dicts, lists and tensors (sharded tensors compared shard by shard)."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"{where}: {type(actual).__name__} is not a tensor"
        if isinstance(expected, DTensor):
            assert isinstance(actual, DTensor) and actual.placements == expected.placements, where
            actual, expected = actual.to_local(), expected.to_local()
        assert actual.dtype == expected.dtype and torch.equal(actual, expected), f"{where} differs"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), (
            f"{where} keys differ: {sorted(map(str, actual))} != {sorted(map(str, expected))}"
        )
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
