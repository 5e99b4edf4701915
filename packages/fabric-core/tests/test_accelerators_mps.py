"""MPSAccelerator: the parts that need no Apple GPU (the device check, device parsing, availability)."""

from __future__ import annotations

import pytest
import torch

from fabric_core.accelerators import MPSAccelerator


@pytest.mark.parametrize("device", [torch.device("cpu"), torch.device("cuda", 0), "cpu", "meta"])
def test_setup_device_refuses_a_device_that_is_not_mps(device):
    kind = torch.device(device).type
    with pytest.raises(ValueError, match=rf"setup_device\({kind}.*expected the MPS device.*accelerator='{kind}'"):
        MPSAccelerator().setup_device(device)


@pytest.mark.parametrize("device", [torch.device("mps"), torch.device("mps", 0), "mps"])
def test_setup_device_accepts_the_mps_device(device):
    # Nothing to select on a Mac's single GPU: accepting it touches no device, so this runs anywhere.
    MPSAccelerator().setup_device(device)


def test_the_mps_device_is_the_only_parallel_device():
    assert MPSAccelerator.get_parallel_devices(1) == [torch.device("mps", 0)]
