"""FSDPPrecision: FSDP2's mixed-precision policy on top of fabric-core's precision of the same name."""

from __future__ import annotations

import functools

import pytest
import torch

from fabric_core.testing import PrecisionConformance
from fabric_fsdp import FSDPPrecision


def test_mixed_modes_compute_low_and_reduce_in_float32_with_float32_master_weights():
    for name, dtype in [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)]:
        policy = FSDPPrecision(name).mixed_precision_policy
        assert (policy.param_dtype, policy.reduce_dtype, policy.output_dtype) == (dtype, torch.float32, None)
        module = FSDPPrecision(name).convert_module(torch.nn.Linear(2, 2))
        assert module.weight.dtype == torch.float32  # the parameters FSDP shards stay float32


@pytest.mark.parametrize(("name", "dtype"), [("bf16-true", torch.bfloat16), ("16-true", torch.float16)])
def test_true_modes_convert_the_parameters_and_need_no_policy(name, dtype):
    precision = FSDPPrecision(name)
    assert precision.mixed_precision_policy is None
    assert precision.convert_module(torch.nn.Linear(2, 2)).weight.dtype == dtype


def test_32_true_changes_nothing_in_forward():
    precision = FSDPPrecision()
    inputs, module = (torch.randn(2, 2),), torch.nn.Linear(2, 2)
    assert precision.mixed_precision_policy is None
    assert precision.convert_input(inputs) is inputs and precision.convert_module(module) is module
    with precision.forward_context():
        output = module(*inputs)
    assert output.dtype == torch.float32 and precision.convert_output(output) is output


def test_mixed_forward_runs_under_autocast_on_the_given_device():
    precision = FSDPPrecision("bf16-mixed", device="cpu")
    with precision.forward_context():
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    assert precision.convert_output(out).dtype == torch.float32


def test_16_mixed_scales_the_loss_with_a_sharded_grad_scaler():
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    precision = FSDPPrecision("16-mixed", device="cpu")
    assert isinstance(precision.scaler, ShardedGradScaler) and precision.skips_nonfinite_steps
    assert FSDPPrecision("bf16-mixed").scaler is None


def test_unknown_precision_lists_the_supported_ones():
    with pytest.raises(ValueError, match=r"FSDPPrecision\(precision='8-mixed'\).*'32-true', '16-true'"):
        FSDPPrecision("8-mixed")


def test_only_16_mixed_takes_a_scaler():
    with pytest.raises(ValueError, match="FSDPPrecision\\('bf16-mixed'\\) takes no gradient scaler"):
        FSDPPrecision("bf16-mixed", scaler=torch.amp.GradScaler("cpu"))


def test_device_must_be_a_string():
    with pytest.raises(TypeError, match="device=0"):
        FSDPPrecision("bf16-mixed", device=0)


# -- the conformance kit, on plain (unsharded) modules ----------------------------------------------


class TestFSDPPrecision32True(PrecisionConformance):
    precision_factory = FSDPPrecision


class TestFSDPPrecisionBF16Mixed(PrecisionConformance):
    precision_factory = functools.partial(FSDPPrecision, "bf16-mixed", device="cpu")


class TestFSDPPrecision16Mixed(PrecisionConformance):
    precision_factory = functools.partial(FSDPPrecision, "16-mixed", device="cpu")

    @pytest.fixture(autouse=True)
    def _sharded_scaler_needs_a_process_group(self, process_group_of_one):
        # The ShardedGradScaler agrees with the other ranks on skipping a step: an all-reduce.
        yield


class TestFSDPPrecisionBF16True(PrecisionConformance):
    precision_factory = functools.partial(FSDPPrecision, "bf16-true")


class TestFSDPPrecision16True(PrecisionConformance):
    precision_factory = functools.partial(FSDPPrecision, "16-true")
