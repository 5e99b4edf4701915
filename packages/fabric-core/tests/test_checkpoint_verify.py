"""fabric.load(verify=True), fabric.load_raw(verify=True) and `fabric checkpoint verify`: damaged files are caught."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from torch import nn

from fabric_core import Fabric
from fabric_core.cli import main as fabric_main
from fabric_core.io import CheckpointCorruptError


def _flip_one_byte_of_tensor_data(path) -> str:
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 1000)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        where = info.header_offset + 30 + name_len + extra_len + 100
        f.seek(where)
        byte = f.read(1)[0]
        f.seek(where)
        f.write(bytes([byte ^ 0x01]))
    return info.filename


@pytest.fixture
def damaged(tmp_path):
    path = tmp_path / "model.ckpt"
    Fabric(accelerator="cpu", devices=1).save(path, {"model": nn.Linear(64, 64), "step": 5})
    record = _flip_one_byte_of_tensor_data(path)
    return path, record


def test_load_with_verify_raises_naming_the_damaged_record(damaged):
    path, record = damaged
    with pytest.raises(CheckpointCorruptError) as raised:
        Fabric(accelerator="cpu", devices=1).load(path, {"model": nn.Linear(64, 64)}, verify=True)
    assert raised.value.path == str(path) and len(raised.value.problems) == 1
    assert record in str(raised.value) and "CRC-32" in str(raised.value)


def test_plain_load_still_loads_the_damaged_file(damaged):
    path, _ = damaged
    assert Fabric(accelerator="cpu", devices=1).load(path, {"model": nn.Linear(64, 64)}) == {"step": 5}


def test_load_raw_with_verify_raises(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(nn.Linear(64, 64).state_dict(), path)
    _flip_one_byte_of_tensor_data(path)
    with pytest.raises(CheckpointCorruptError, match=r"weights\.pt"):
        Fabric(accelerator="cpu", devices=1).load_raw(path, nn.Linear(64, 64), verify=True)


def test_an_intact_checkpoint_loads_with_verify(tmp_path):
    path = tmp_path / "model.ckpt"
    fabric = Fabric(accelerator="cpu", devices=1)
    fabric.save(path, {"model": nn.Linear(4, 4), "step": 1})
    assert fabric.load(path, {"model": nn.Linear(4, 4)}, verify=True) == {"step": 1}


def test_verify_must_be_a_boolean(tmp_path):
    with pytest.raises(TypeError, match=r"verify='yes'"):
        Fabric(accelerator="cpu", devices=1).load(tmp_path / "x", verify="yes")


def test_cli_verify_exit_codes_and_lines(damaged, tmp_path, capsys):
    path, record = damaged
    intact = tmp_path / "intact.ckpt"
    torch.save({"w": torch.ones(10)}, intact)
    assert fabric_main(["checkpoint", "verify", str(intact)]) == 0
    assert capsys.readouterr().out == f"{intact}: intact\n"
    assert fabric_main(["checkpoint", "verify", str(intact), str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{intact}: intact" and len(lines) == 2 and record in lines[1]


def test_cli_verify_json(damaged, capsys):
    path, _ = damaged
    assert fabric_main(["checkpoint", "verify", "--json", str(path)]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["schema_version"] == 1
    assert document["checkpoints"][0]["path"] == str(path) and document["checkpoints"][0]["intact"] is False


@pytest.mark.parametrize("argv", [["checkpoint"], ["checkpoint", "verify"], ["checkpoint", "check", "x"]])
def test_cli_usage_errors_exit_2(argv, capsys):
    assert fabric_main(argv) == 2


def test_cli_help_exits_0(capsys):
    assert fabric_main(["checkpoint", "verify", "--help"]) == 0
    assert "CRC-32" in capsys.readouterr().out
