"""``fabric consolidate``: a core command whose checkpoint formats come from plugins.

Each test installs its formats as a plugin defined here (a module registered for the test, forgotten
afterwards), so the behaviour is fabric-core's whatever sibling packages are installed.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from fabric_core.cli import main as fabric
from fabric_core.cli import plugins as plugins_cli
from fabric_core.io import CheckpointConsolidator, atomic_torch_save
from fabric_core.plugins import hookimpl, manager
from fabric_core.plugins.manager import PluginLoadWarning, get_registries
from fabric_core.plugins.registry import Registry

DISTRIBUTION = "fabric-test-formats"


class MarkerConsolidator(CheckpointConsolidator):
    """Recognizes a directory holding a file named ``marker``; writes the sorted names of its files."""

    def __init__(self, marker: str = "MARKER") -> None:
        self.marker = marker

    def recognizes(self, path: Path) -> bool:
        return (path / self.marker).is_file()

    def consolidate(self, path: Path, output: Path) -> Path:
        if not self.recognizes(path):
            raise ValueError(f"'{path}' has no {self.marker} file.")
        atomic_torch_save({"files": sorted(p.name for p in path.iterdir())}, output)
        return output


class BrokenConsolidator(CheckpointConsolidator):
    def recognizes(self, path: Path) -> bool:
        raise OSError("the plugin's check broke")

    def consolidate(self, path: Path, output: Path) -> Path:
        raise AssertionError("never called")


def plugin_module(name: str, register: Callable[[Registry], None]) -> types.ModuleType:
    """A plugin module whose consolidator hook is ``register``."""
    module = types.ModuleType(name)
    module.fabric_register_checkpoint_consolidators = hookimpl(register)  # type: ignore[attr-defined]
    return module


def marker_formats(registry: Registry) -> None:
    registry.register("marker", MarkerConsolidator, description="a directory with a MARKER file")
    registry.register("other", MarkerConsolidator, description="a directory with an OTHER file", marker="OTHER")


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[types.ModuleType], None]]:
    """``install(module)``: discover the plugin module ``module`` too, as the distribution fabric-test-formats."""

    def install(module: types.ModuleType) -> None:
        monkeypatch.setitem(sys.modules, module.__name__, module)
        source = manager._Source(module.__name__, module.__name__, DISTRIBUTION, "1.0", [], None)
        earlier = manager._entry_points
        monkeypatch.setattr(manager, "_entry_points", lambda: [*earlier(), source])
        manager.reset()

    yield install
    manager.reset()


@pytest.fixture
def formats(install) -> None:
    """The formats ``marker`` and ``other`` are installed."""
    install(plugin_module("marker_formats", marker_formats))


def checkpoint(tmp_path: Path, *files: str) -> Path:
    """A checkpoint directory ``ckpt`` holding the (empty) ``files``."""
    directory = tmp_path / "ckpt"
    directory.mkdir()
    for name in files:
        (directory / name).touch()
    return directory


# -- the command is fabric-core's ---------------------------------------------------------------------------


def test_consolidate_is_a_core_command(without_plugins, capsys) -> None:
    without_plugins("fsdp")
    assert get_registries().commands.get("consolidate").distribution == "fabric-core"
    assert fabric(["--help"]) == 0
    assert "consolidate" in capsys.readouterr().out


def test_help_lists_the_options_and_the_installed_formats(formats, capsys) -> None:
    assert fabric(["consolidate", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--output FILE, -o FILE, --output_file FILE" in out and "--format NAME" in out
    assert re.search(r"\n  marker +a directory with a MARKER file\n", out)


# -- choosing the format --------------------------------------------------------------------------------------


def test_the_format_that_recognizes_the_directory_writes_the_default_output(formats, tmp_path, capsys) -> None:
    directory = checkpoint(tmp_path, "MARKER", "shard-0")
    assert fabric(["consolidate", str(directory)]) == 0
    output = tmp_path / "ckpt.consolidated"
    assert torch.load(output) == {"files": ["MARKER", "shard-0"]}
    assert capsys.readouterr().out.strip() == f"fabric consolidate: wrote {output} (0.0 MiB; format marker)"


def test_the_default_output_of_the_current_directory_is_beside_it(formats, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(checkpoint(tmp_path, "MARKER"))
    assert fabric(["consolidate", "."]) == 0
    assert torch.load(tmp_path / "ckpt.consolidated") == {"files": ["MARKER"]}


@pytest.mark.parametrize("option", ["--output", "-o", "--output_file"])
def test_output_names_the_file_to_write(formats, tmp_path, option) -> None:
    directory = checkpoint(tmp_path, "OTHER")
    assert fabric(["consolidate", str(directory), option, str(tmp_path / "one.pt")]) == 0
    assert torch.load(tmp_path / "one.pt") == {"files": ["OTHER"]}


def test_format_picks_the_format_by_name(formats, tmp_path, capsys) -> None:
    directory = checkpoint(tmp_path, "MARKER", "OTHER")
    assert fabric(["consolidate", str(directory), "--format", "other", "-o", str(tmp_path / "out.pt")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("(0.0 MiB; format other)")


def test_a_directory_two_formats_recognize_asks_for_format(formats, tmp_path, capsys) -> None:
    directory = checkpoint(tmp_path, "MARKER", "OTHER")
    assert fabric(["consolidate", str(directory)]) == 2
    err = capsys.readouterr().err
    assert "recognized by more than one checkpoint format: marker, other" in err and "--format NAME" in err
    assert not (tmp_path / "ckpt.consolidated").exists()


def test_an_unknown_format_lists_the_installed_names(formats, tmp_path, capsys) -> None:
    assert fabric(["consolidate", str(checkpoint(tmp_path, "MARKER")), "--format", "markr"]) == 2
    err = capsys.readouterr().err
    assert "fabric consolidate: Unknown checkpoint format 'markr'" in err
    assert "'marker'" in err and "'other'" in err and "Did you mean 'marker'?" in err


def test_a_first_party_format_not_installed_says_what_to_install(without_plugins, tmp_path, capsys) -> None:
    without_plugins("deepspeed")  # hidden, in case fabric-deepspeed is installed in this environment
    assert fabric(["consolidate", str(checkpoint(tmp_path)), "--format", "deepspeed"]) == 2
    assert 'provided by fabric-deepspeed: pip install "fabric-core[deepspeed]"' in capsys.readouterr().err


def test_nothing_recognizing_the_directory_lists_the_formats_and_what_to_install(
    without_plugins, install, tmp_path, capsys
) -> None:
    without_plugins("fsdp", "deepspeed")
    install(plugin_module("marker_formats", marker_formats))
    assert fabric(["consolidate", str(checkpoint(tmp_path, "shard-0"))]) == 2
    err = capsys.readouterr().err
    assert f"fabric consolidate: no installed checkpoint format recognizes '{tmp_path / 'ckpt'}'" in err
    assert "marker  a directory with a MARKER file" in err and "other   a directory with an OTHER file" in err
    assert 'provided by fabric-fsdp: pip install "fabric-core[fsdp]"' in err
    assert 'provided by fabric-deepspeed: pip install "fabric-core[deepspeed]"' in err


# -- what the format says ---------------------------------------------------------------------------------------


def test_a_value_error_of_the_format_exits_2_with_its_message(formats, tmp_path, capsys) -> None:
    assert fabric(["consolidate", str(checkpoint(tmp_path)), "--format", "other"]) == 2
    assert capsys.readouterr().err.strip() == f"fabric consolidate: '{tmp_path / 'ckpt'}' has no OTHER file."


def test_a_missing_directory_exits_2(formats, tmp_path, capsys) -> None:
    assert fabric(["consolidate", str(tmp_path / "missing")]) == 2
    assert "is not a checkpoint directory: it does not exist" in capsys.readouterr().err


def test_a_file_exits_2(formats, tmp_path, capsys) -> None:
    (tmp_path / "model.pt").touch()
    assert fabric(["consolidate", str(tmp_path / "model.pt"), "--format", "marker"]) == 2
    assert "is not a checkpoint directory: it is a file" in capsys.readouterr().err


# -- a broken format -----------------------------------------------------------------------------------------


def broken_and_marker(registry: Registry) -> None:
    registry.register("broken", BrokenConsolidator)
    registry.register("marker", MarkerConsolidator)


def test_a_format_whose_check_raises_is_skipped_with_a_warning(install, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(manager.STRICT_ENV, raising=False)
    install(plugin_module("broken_formats", broken_and_marker))
    with pytest.warns(PluginLoadWarning, match=r"checkpoint format 'broken' .* OSError: the plugin's check broke"):
        assert fabric(["consolidate", str(checkpoint(tmp_path, "MARKER"))]) == 0


def test_a_format_whose_check_raises_is_an_error_under_strict_plugins(install, tmp_path, capsys) -> None:
    install(plugin_module("broken_formats", broken_and_marker))
    assert fabric(["consolidate", str(checkpoint(tmp_path, "MARKER"))]) == 1
    assert "FABRIC_STRICT_PLUGINS=1 makes this an error" in capsys.readouterr().err


def test_a_registered_class_that_is_not_a_consolidator_is_refused() -> None:
    with pytest.raises(TypeError, match=r"not a subclass of fabric_core\.io\.consolidate\.CheckpointConsolidator"):
        Registry("consolidators").register("wrong", Registry)


# -- fabric plugins -------------------------------------------------------------------------------------------


def test_plugins_json_shows_the_consolidator_names(formats, capsys) -> None:
    assert plugins_cli.main(["--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    (plugin,) = [p for p in document["plugins"] if p["distribution"] == DISTRIBUTION]
    assert plugin["registered"]["consolidators"] == ["marker", "other"]
    assert all("consolidators" in p["registered"] for p in document["plugins"])


# -- the base class -----------------------------------------------------------------------------------------


def test_the_base_class_docstring_example_works_through_the_command(install, monkeypatch, tmp_path) -> None:
    doc = inspect.getdoc(CheckpointConsolidator)
    hooks_source = doc.split("# my_package/fabric_plugin.py", 1)[1].split("# my_package/key_files.py", 1)[0]
    class_source = doc.split("# my_package/key_files.py", 1)[1].split("\nThen ", 1)[0]
    package, key_files = types.ModuleType("my_package"), types.ModuleType("my_package.key_files")
    exec(textwrap.dedent(class_source), key_files.__dict__)
    package.key_files = key_files  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_package", package)
    monkeypatch.setitem(sys.modules, "my_package.key_files", key_files)
    plugin = types.ModuleType("my_package.fabric_plugin")
    exec(textwrap.dedent(hooks_source.split("\n", 1)[1]), plugin.__dict__)
    install(plugin)

    directory = checkpoint(tmp_path)
    torch.save(torch.ones(2), directory / "model.pt")
    (directory / "keys.json").write_text(json.dumps({"model": "model.pt", "step": "step.pt"}))
    assert fabric(["consolidate", str(directory)]) == 2  # step.pt is missing: the example's ValueError
    torch.save(7, directory / "step.pt")
    assert fabric(["consolidate", str(directory)]) == 0
    consolidated = torch.load(tmp_path / "ckpt.consolidated")
    assert torch.equal(consolidated["model"], torch.ones(2)) and consolidated["step"] == 7


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_base_class_and_the_command_import_no_torch() -> None:
    code = "import sys, fabric_core.io.consolidate, fabric_core.cli.consolidate; print('torch' in sys.modules)"
    assert _python(code) == "False"


def test_importing_fabric_core_does_not_import_the_consolidate_module() -> None:
    assert _python("import sys, fabric_core; print('fabric_core.io.consolidate' in sys.modules)") == "False"
