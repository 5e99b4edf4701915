"""`fabric consolidate`: arguments, errors, and a consolidation in this process."""

from __future__ import annotations

import pytest
import torch

from fabric_core.cli import main as fabric
from fabric_fsdp import consolidate_checkpoint


def test_help_describes_the_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fabric(["consolidate", "--help"])
    assert exit_info.value.code == 0
    assert "--output" in capsys.readouterr().out


def test_fabric_help_lists_consolidate(capsys):
    assert fabric(["--help"]) == 0
    assert "consolidate" in capsys.readouterr().out


def test_a_directory_that_is_not_a_sharded_checkpoint_exits_2_with_the_reason(tmp_path, capsys):
    assert fabric(["consolidate", str(tmp_path), "--output", str(tmp_path / "out.pt")]) == 2
    assert "is not a sharded checkpoint: it has no .metadata file" in capsys.readouterr().err
    assert fabric(["consolidate", str(tmp_path / "missing")]) == 2
    assert "it does not exist" in capsys.readouterr().err


def test_consolidating_a_checkpoint_saved_in_one_process(tmp_path, free_port):
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port}", rank=0, world_size=1)
    state = {"model": {"weight": torch.arange(6.0).reshape(2, 3)}, "param_groups": [{"lr": 0.1, "params": ["w"]}]}
    dcp.save(state, checkpoint_id=tmp_path / "ckpt")
    torch.save({"epoch": 4}, tmp_path / "ckpt" / "meta.pt")
    dist.destroy_process_group()

    output = consolidate_checkpoint(tmp_path / "ckpt", tmp_path / "ckpt.pt")
    loaded = torch.load(output)
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["param_groups"] == state["param_groups"] and loaded["epoch"] == 4


def test_the_default_output_is_next_to_the_directory(tmp_path, free_port, capsys):
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port}", rank=0, world_size=1)
    dcp.save({"model": {"bias": torch.ones(3)}}, checkpoint_id=tmp_path / "step-10")
    dist.destroy_process_group()
    assert fabric(["consolidate", str(tmp_path / "step-10")]) == 0
    assert (tmp_path / "step-10.consolidated").is_file()
    assert "wrote" in capsys.readouterr().out
