"""The plugin: registered through the `fabric` entry point, cheap to import, listed by `fabric plugins`."""

from __future__ import annotations

import json
import subprocess
import sys

from fabric_core.cli import main as fabric_command

NAMES = [
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
    "deepspeed_stage_3_offload_nvme",
]


def test_importing_the_plugin_and_the_package_imports_no_deepspeed():
    code = (
        "import sys, fabric_deepspeed, fabric_deepspeed.plugin, fabric_deepspeed.consolidator\n"
        "from fabric_core.plugins.manager import get_registries\n"
        "get_registries()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'deepspeed')\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_fabric_plugins_lists_the_strategies_and_the_consolidate_format(capsys):
    assert fabric_command(["plugins", "--json"]) == 0
    plugins = json.loads(capsys.readouterr().out)["plugins"]
    (ours,) = [p for p in plugins if p["distribution"] == "fabric-deepspeed"]
    assert ours["status"] == "ok" and not ours["errors"]
    assert sorted(ours["registered"]["strategies"]) == NAMES
    assert ours["registered"]["consolidators"] == ["deepspeed"]
