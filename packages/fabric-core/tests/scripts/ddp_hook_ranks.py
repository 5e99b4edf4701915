"""A DDPStrategy subclass records the ranks it sees in each hook it overrides; each rank writes them to a file.

usage: python ddp_hook_ranks.py popen|spawn|fork|torchrun OUT_DIR

Each process that runs a hook appends ``{"hook", "pid", "global_rank", ...}`` to the strategy's record;
``teardown`` writes the record to ``OUT_DIR/<pid>.json``. Under ``torchrun`` the script is started once
per rank by torchrun itself; in the other modes it runs once and Fabric's launcher starts the ranks.
"""

import json
import os
import sys
from pathlib import Path

import torch

from fabric_core import Fabric
from fabric_core.strategies import DDPStrategy


class RecordingDDP(DDPStrategy):
    def __init__(self, out_dir: str, **kwargs):
        super().__init__(process_group_backend="gloo", **kwargs)
        self.out_dir = out_dir
        self.seen = []

    def _record(self, hook):
        self.seen.append(
            {
                "hook": hook,
                "pid": os.getpid(),
                "global_rank": self.global_rank,
                "local_rank": self.local_rank,
                "node_rank": self.node_rank,
                "world_size": self.world_size,
                "is_global_zero": self.is_global_zero,
            }
        )

    def configure_launcher(self):
        self._record("configure_launcher")
        super().configure_launcher()

    def setup_environment(self):
        self._record("setup_environment before super()")
        super().setup_environment()
        self._record("setup_environment after super()")

    def module_to_device(self, module):
        self._record("module_to_device")
        super().module_to_device(module)

    def setup_module(self, module):
        self._record("setup_module")
        return super().setup_module(module)

    def setup_optimizer(self, optimizer):
        self._record("setup_optimizer")
        return super().setup_optimizer(optimizer)

    def barrier(self, name=None):
        self._record("barrier")
        super().barrier(name)

    def all_reduce(self, tensor, group=None, reduce_op="mean"):
        self._record("all_reduce")
        return super().all_reduce(tensor, group, reduce_op)

    def teardown(self):
        self._record("teardown")
        path = Path(self.out_dir) / f"{os.getpid()}.json"
        path.write_text(json.dumps(self.seen))
        super().teardown()


def train(fabric):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = fabric.setup(model, optimizer)
    fabric.backward(model(torch.ones(4, 2)).sum())
    optimizer.step()
    fabric.all_reduce(torch.tensor(1.0))
    fabric.barrier()


if __name__ == "__main__":
    mode, out_dir = sys.argv[1], sys.argv[2]
    start_method = "popen" if mode in ("popen", "torchrun") else mode
    fabric = Fabric(accelerator="cpu", devices=2, strategy=RecordingDDP(out_dir, start_method=start_method))
    fabric.launch(train)
    if start_method == "popen":
        fabric.teardown()  # spawned and forked workers tear down when the launched function returns
