"""The ``fsdp`` format of ``fabric consolidate``: recognized by its ``.metadata`` file, consolidated in this process."""

from __future__ import annotations

import re
import subprocess
import sys

import torch

from fabric_core.cli import main as fabric
from fabric_core.plugins.manager import get_registries
from fabric_fsdp import consolidate_checkpoint
from fabric_fsdp.consolidator import DCPConsolidator


def _save_dcp(state, path, port):
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    dcp.save(state, checkpoint_id=path)
    dist.destroy_process_group()


def test_fabric_fsdp_registers_the_fsdp_format_and_no_command():
    entry = get_registries().consolidators.get("fsdp")
    assert (entry.distribution, entry.load()) == ("fabric-fsdp", DCPConsolidator)
    assert get_registries().commands.get("consolidate").distribution == "fabric-core"


def test_a_directory_with_a_metadata_file_is_recognized(tmp_path):
    assert not DCPConsolidator().recognizes(tmp_path)
    (tmp_path / ".metadata").touch()
    assert DCPConsolidator().recognizes(tmp_path)


def test_recognizing_a_directory_imports_neither_torch_distributed_checkpoint_nor_the_strategies(tmp_path):
    heavy = ("torch.distributed.checkpoint", "torch.distributed.fsdp", "fabric_fsdp.checkpoint", "fabric_fsdp.fsdp")
    code = (
        "import sys; from pathlib import Path\n"
        "from fabric_core.plugins.manager import get_registries\n"
        f"print(get_registries().consolidators.create('fsdp').recognizes(Path({str(tmp_path)!r})))\n"
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "[]"]


def test_a_directory_that_is_not_a_sharded_checkpoint_exits_2_with_the_reason(tmp_path, capsys):
    assert fabric(["consolidate", str(tmp_path), "--format", "fsdp", "--output", str(tmp_path / "out.pt")]) == 2
    assert "is not a sharded checkpoint: it has no .metadata file" in capsys.readouterr().err
    assert fabric(["consolidate", str(tmp_path)]) == 2
    listed = r"\n  fsdp +torch\.distributed\.checkpoint directories \(a \.metadata file\)"
    assert re.search(listed, capsys.readouterr().err)


def test_consolidating_a_checkpoint_saved_in_one_process(tmp_path, free_port):
    state = {"model": {"weight": torch.arange(6.0).reshape(2, 3)}, "param_groups": [{"lr": 0.1, "params": ["w"]}]}
    _save_dcp(state, tmp_path / "ckpt", free_port)
    torch.save({"epoch": 4}, tmp_path / "ckpt" / "meta.pt")

    output = consolidate_checkpoint(tmp_path / "ckpt", tmp_path / "ckpt.pt")
    loaded = torch.load(output)
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["param_groups"] == state["param_groups"] and loaded["epoch"] == 4


def test_the_command_recognizes_the_checkpoint_and_writes_the_default_output(tmp_path, free_port, capsys):
    _save_dcp({"model": {"bias": torch.ones(3)}}, tmp_path / "step-10", free_port)
    assert fabric(["consolidate", str(tmp_path / "step-10")]) == 0
    assert torch.equal(torch.load(tmp_path / "step-10.consolidated")["model"]["bias"], torch.ones(3))
    out = capsys.readouterr().out
    assert "wrote" in out and "MiB; format fsdp)" in out
