"""64-true: real floating-point tensors become float64, complex and integer ones keep their dtype (as in Lightning)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fabric_core import Fabric
from fabric_core.precision import DoublePrecision


class ComplexFilter(nn.Module):
    """A model with a complex weight, a complex buffer, a real weight and an integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64))
        self.scale = nn.Parameter(torch.tensor([0.5, 2.0]))
        self.register_buffer("phase", torch.tensor([1j, -1j], dtype=torch.complex64))
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        return ((signal * self.kernel * self.phase).abs() * self.scale).sum()


def _dtypes(module: nn.Module) -> dict[str, torch.dtype]:
    return {name: tensor.dtype for name, tensor in [*module.named_parameters(), *module.named_buffers()]}


def test_convert_module_keeps_complex_parameters_and_buffers_complex():
    model = DoublePrecision().convert_module(ComplexFilter())

    assert _dtypes(model) == {
        "kernel": torch.complex64,
        "scale": torch.float64,
        "phase": torch.complex64,
        "calls": torch.int64,
    }
    # Nothing was lost on the way: the imaginary parts are still there.
    assert torch.equal(model.kernel, torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64))
    assert torch.equal(model.phase, torch.tensor([1j, -1j], dtype=torch.complex64))


def test_convert_module_casts_every_real_floating_dtype_to_float64():
    model = nn.Module()
    for index, dtype in enumerate((torch.float16, torch.bfloat16, torch.float32)):
        model.register_buffer(f"buffer{index}", torch.ones(1, dtype=dtype))

    assert set(_dtypes(DoublePrecision().convert_module(model)).values()) == {torch.float64}


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128, torch.int32, torch.bool])
def test_convert_input_leaves_complex_and_integer_inputs_alone(dtype):
    batch = {"signal": torch.ones(2, dtype=dtype), "weights": torch.ones(2, dtype=torch.float16)}

    converted = DoublePrecision().convert_input(batch)

    assert converted["signal"].dtype == dtype
    assert converted["weights"].dtype == torch.float64


def test_convert_output_casts_real_outputs_back_and_leaves_complex_ones():
    outputs = (torch.ones(1, dtype=torch.float64), torch.ones(1, dtype=torch.complex128))

    real, complex_ = DoublePrecision().convert_output(outputs)

    assert real.dtype == torch.get_default_dtype()
    assert complex_.dtype == torch.complex128


def test_a_complex_model_set_up_in_64_true_trains_with_its_imaginary_parts():
    fabric = Fabric(accelerator="cpu", devices=1, precision="64-true")
    reference = ComplexFilter()
    model = ComplexFilter()
    model, optimizer = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))

    assert model.kernel.dtype == torch.complex64 and model.scale.dtype == torch.float64
    signal = torch.tensor([1.0 + 1j, 2.0], dtype=torch.complex64)
    loss = model(signal)
    expected = ((signal * reference.kernel * reference.phase).abs() * reference.scale.double()).sum()
    assert loss.dtype == torch.float32  # outputs come back in the default dtype
    torch.testing.assert_close(loss, expected.float())

    fabric.backward(loss)
    optimizer.step()
    assert model.kernel.dtype == torch.complex64
    assert model.kernel.imag.abs().sum() > 0
    assert not torch.equal(model.kernel.detach(), reference.kernel.detach())
