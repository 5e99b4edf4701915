"""Sharded checkpoints of two processes: the manifest, a full disk on one rank, a missing shard.

usage: python save_errors.py OUT        (two processes, started by Fabric)

Each rank prints "rank N CHECK ok" per check, and the error it got as "rank N error: ..." (one line each).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from _shared import launched_fabric, report
from torch import nn
from torch.distributed.checkpoint.filesystem import FileSystem

from fabric_core.io import integrity
from fabric_fsdp import FSDPStrategy


def setup(fabric):
    torch.manual_seed(0)
    return fabric.setup_module(nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4)))


def main(out: Path) -> None:
    fabric = launched_fabric(devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}))
    rank = fabric.global_rank
    model = setup(fabric)
    fabric.save(out / "ckpt", {"model": model, "step": 1})

    manifest = json.loads((out / "ckpt" / integrity.MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"], manifest
    assert manifest["world_size"] == 2 and integrity.verify_checkpoint(out / "ckpt") == []
    report(f"rank {rank} manifest of both ranks' shards ok")

    # A full disk on rank 1 only: both ranks get the same one-line error, and nothing is left behind.
    real = FileSystem.create_stream

    def create_stream(self, path, mode):
        if rank == 1 and "w" in mode and str(path).endswith(".distcp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(self, path, mode)

    FileSystem.create_stream = create_stream
    try:
        fabric.save(out / "ckpt", {"model": model, "step": 2})
        raise AssertionError("the save on a full disk did not fail")
    except OSError as err:
        assert err.errno == errno.ENOSPC and err.__cause__ is None and err.__suppress_context__, repr(err)
        report(f"rank {rank} error: {err}")
    finally:
        FileSystem.create_stream = real
    fabric.barrier()
    assert sorted(os.listdir(out)) == ["ckpt"], os.listdir(out)
    assert fabric.load(out / "ckpt", {"model": setup(fabric)}) == {"step": 1}
    report(f"rank {rank} full disk on one rank ok")

    # A missing shard of rank 1's, found before DCP reads anything, on both ranks.
    if fabric.is_global_zero:
        shutil.copytree(out / "ckpt", out / "damaged")
        (out / "damaged" / "__1_0.distcp").unlink()
    fabric.barrier()
    try:
        fabric.load(out / "damaged", {"model": setup(fabric)})
        raise AssertionError("a missing shard was not reported")
    except integrity.CheckpointCorruptError as err:
        assert "missing shard __1_0.distcp (shard 2 of 2)" in str(err), err
        report(f"rank {rank} error: {' | '.join(str(err).splitlines())}")
    report(f"rank {rank} missing shard ok")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
