"""The public helpers plugins build on: is_wrapped, lazy_exports and the public teardown."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
from torch.utils.data import DataLoader

from fabric_core import Fabric
from fabric_core.utilities.imports import lazy_exports
from fabric_core.wrappers import is_wrapped

# -- is_wrapped ---------------------------------------------------------------------------------------------


@pytest.fixture
def fabric():
    fabric = Fabric(accelerator="cpu", devices=1)
    yield fabric
    fabric.teardown()


def test_is_wrapped_holds_for_what_fabric_set_up(fabric):
    model, optimizer = fabric.setup(torch.nn.Linear(2, 2), torch.optim.SGD(torch.nn.Linear(2, 2).parameters()))
    loader = fabric.setup_dataloaders(DataLoader(range(4)))
    assert is_wrapped(model) and is_wrapped(optimizer) and is_wrapped(loader)


def test_is_wrapped_is_false_for_plain_objects(fabric):
    module = torch.nn.Linear(2, 2)
    for obj in (module, torch.optim.SGD(module.parameters()), DataLoader(range(4)), None, "model", 3):
        assert not is_wrapped(obj), obj


def test_is_wrapped_sees_through_torch_compile_of_a_set_up_module(fabric):
    model = fabric.setup(torch.nn.Linear(2, 2))
    assert is_wrapped(torch.compile(model))
    assert not is_wrapped(torch.compile(torch.nn.Linear(2, 2)))


def test_the_module_of_a_set_up_model_is_the_users_module(fabric):
    module = torch.nn.Linear(2, 2)
    model = fabric.setup(module)
    assert is_wrapped(model) and model.module is module


# -- lazy_exports -------------------------------------------------------------------------------------------


@pytest.fixture
def package(monkeypatch):
    module = types.ModuleType("lazy_pkg")
    monkeypatch.setitem(sys.modules, "lazy_pkg", module)
    return module


def test_lazy_exports_imports_a_name_on_first_access_and_keeps_it(package):
    package.__getattr__, package.__dir__ = lazy_exports("lazy_pkg", {"OrderedDict": "collections"})
    assert "OrderedDict" not in vars(package)
    from collections import OrderedDict

    assert package.OrderedDict is OrderedDict
    assert vars(package)["OrderedDict"] is OrderedDict  # later reads are plain lookups
    assert "OrderedDict" in dir(package)


def test_lazy_exports_raises_attribute_error_for_other_names(package):
    package.__getattr__, package.__dir__ = lazy_exports("lazy_pkg", {"OrderedDict": "collections"})
    with pytest.raises(AttributeError, match="'lazy_pkg' has no attribute 'Missing'"):
        package.Missing  # noqa: B018
    assert not hasattr(package, "Missing")


def test_lazy_exports_needs_a_package_being_imported():
    with pytest.raises(ValueError, match="pass __name__"):
        lazy_exports("no_such_package_here", {})


def test_lazy_exports_needs_names_mapped_to_module_names(package):
    with pytest.raises(TypeError, match="mapping of public names to module names"):
        lazy_exports("lazy_pkg", {"OrderedDict": object()})


def test_importing_the_lazy_exports_module_stays_cheap():
    code = "import sys, fabric_core.utilities.imports; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_the_private_lazy_module_is_gone():
    with pytest.raises(ModuleNotFoundError):
        __import__("fabric_core._lazy")


# -- teardown ------------------------------------------------------------------------------------------------


def test_teardown_is_public_and_may_be_called_twice():
    fabric = Fabric(accelerator="cpu", devices=1)
    fabric.launch()
    fabric.teardown()
    fabric.teardown()
