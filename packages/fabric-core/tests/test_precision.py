"""The built-in precisions: what they do to modules, inputs, outputs, default dtypes, losses and steps."""

from __future__ import annotations

import functools
import warnings
from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import fabric_core
from fabric_core.precision import DoublePrecision, HalfPrecision, MixedPrecision, Precision

Pair = namedtuple("Pair", ["features", "label"])


@dataclass
class Batch:
    features: torch.Tensor
    index: torch.Tensor


def _nested_batch() -> dict:
    return {
        "x": torch.ones(2),
        "ids": torch.arange(2),
        "pair": Pair(torch.zeros(3), torch.tensor([1, 0, 1])),
        "items": (torch.ones(1), [torch.full((2,), 0.5)]),
        "batch": Batch(torch.ones(2, dtype=torch.float64), torch.tensor([3, 4], dtype=torch.int32)),
        "mask": torch.tensor([True, False]),
        "name": "sample",
    }


def _floating_dtypes(batch: dict) -> list[torch.dtype]:
    return [
        batch["x"].dtype,
        batch["pair"].features.dtype,
        batch["items"][0].dtype,
        batch["items"][1][0].dtype,
        batch["batch"].features.dtype,
    ]


def _mixed(precision: str = "16-mixed", **kwargs) -> MixedPrecision:
    return MixedPrecision(precision, device="cpu", **kwargs)


def _module_with_buffer() -> nn.Module:
    return nn.BatchNorm1d(3)  # parameters and floating buffers, plus an integer buffer


# -- convert_module ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plugin", "dtype"),
    [
        (Precision(), torch.float32),
        (DoublePrecision(), torch.float64),
        (HalfPrecision("16-true"), torch.float16),
        (HalfPrecision("bf16-true"), torch.bfloat16),
        (MixedPrecision("16-mixed", device="cpu"), torch.float32),
        (MixedPrecision("bf16-mixed", device="cpu"), torch.float32),
    ],
    ids=["32-true", "64-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"],
)
def test_convert_module_puts_floating_parameters_and_buffers_in_the_precision_dtype(plugin, dtype):
    module = plugin.convert_module(_module_with_buffer())
    assert {p.dtype for p in module.parameters()} == {dtype}
    assert module.running_mean.dtype == dtype
    assert module.num_batches_tracked.dtype == torch.int64


# -- convert_input / convert_output ------------------------------------------------------------------

_CASTING_PLUGINS = [
    DoublePrecision(),
    HalfPrecision("16-true"),
    HalfPrecision("bf16-true"),
    _mixed("16-mixed"),
    _mixed("bf16-mixed"),
]
_CASTING_IDS = ["64-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"]


@pytest.mark.parametrize(
    ("plugin", "dtype"),
    [
        (DoublePrecision(), torch.float64),
        (HalfPrecision("16-true"), torch.float16),
        (HalfPrecision("bf16-true"), torch.bfloat16),
        (MixedPrecision("16-mixed", device="cpu"), torch.float16),
        (MixedPrecision("bf16-mixed", device="cpu"), torch.bfloat16),
    ],
    ids=["64-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"],
)
def test_convert_input_casts_every_floating_tensor_in_nested_collections(plugin, dtype):
    converted = plugin.convert_input(_nested_batch())
    assert _floating_dtypes(converted) == [dtype] * 5
    assert isinstance(converted["pair"], Pair)
    assert isinstance(converted["batch"], Batch)


@pytest.mark.parametrize("plugin", _CASTING_PLUGINS, ids=_CASTING_IDS)
def test_convert_input_leaves_integer_and_boolean_tensors_and_non_tensors_untouched(plugin):
    original = _nested_batch()
    converted = plugin.convert_input(original)
    assert converted["ids"] is original["ids"]
    assert converted["pair"].label is original["pair"].label
    assert converted["batch"].index is original["batch"].index
    assert converted["mask"] is original["mask"]
    assert converted["name"] == "sample"


def test_convert_input_of_32_true_returns_the_data_itself():
    batch = _nested_batch()
    assert Precision().convert_input(batch) is batch


@pytest.mark.parametrize("plugin", _CASTING_PLUGINS, ids=_CASTING_IDS)
def test_convert_output_casts_floating_outputs_back_to_float32(plugin):
    outputs = {"logits": torch.ones(2, dtype=torch.float16), "pred": (torch.ones(1, dtype=torch.float64),)}
    outputs["classes"] = torch.tensor([1, 2])
    converted = plugin.convert_output(outputs)
    assert converted["logits"].dtype == torch.float32
    assert converted["pred"][0].dtype == torch.float32
    assert converted["classes"].dtype == torch.int64


# -- default-dtype contexts --------------------------------------------------------------------------

_TRUE_PRECISIONS = [
    (DoublePrecision(), torch.float64),
    (HalfPrecision("16-true"), torch.float16),
    (HalfPrecision("bf16-true"), torch.bfloat16),
]
_CONTEXTS = ["forward_context", "module_init_context", "tensor_init_context"]


@pytest.mark.parametrize("context", _CONTEXTS)
@pytest.mark.parametrize(("plugin", "dtype"), _TRUE_PRECISIONS, ids=["64-true", "16-true", "bf16-true"])
def test_true_precision_contexts_set_the_default_dtype_and_restore_it(plugin, dtype, context):
    with getattr(plugin, context)():
        assert torch.get_default_dtype() == dtype
        assert torch.empty(1).dtype == dtype
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize("context", _CONTEXTS)
@pytest.mark.parametrize(("plugin", "dtype"), _TRUE_PRECISIONS, ids=["64-true", "16-true", "bf16-true"])
def test_true_precision_contexts_restore_the_default_dtype_when_the_block_raises(plugin, dtype, context):
    with pytest.raises(KeyError), getattr(plugin, context)():
        raise KeyError("inside the block")
    assert torch.get_default_dtype() == torch.float32


def test_module_init_context_creates_layers_in_the_precision_dtype():
    with HalfPrecision("bf16-true").module_init_context():
        layer = nn.Linear(2, 2)
    assert layer.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("context", _CONTEXTS)
def test_32_true_and_mixed_contexts_keep_float32_as_default(context):
    for plugin in (Precision(), _mixed("16-mixed"), _mixed("bf16-mixed")):
        with getattr(plugin, context)():
            assert torch.get_default_dtype() == torch.float32


# -- MixedPrecision: autocast and construction -------------------------------------------------------


@pytest.mark.parametrize(("precision", "dtype"), [("16-mixed", torch.float16), ("bf16-mixed", torch.bfloat16)])
def test_mixed_forward_context_runs_a_linear_in_the_autocast_dtype_on_cpu(precision, dtype):
    layer = nn.Linear(4, 2)
    with _mixed(precision).forward_context():
        inside = layer(torch.randn(3, 4))
    assert inside.dtype == dtype
    assert layer(torch.randn(3, 4)).dtype == torch.float32
    assert layer.weight.dtype == torch.float32


def test_16_mixed_creates_a_grad_scaler_for_the_device():
    plugin = _mixed("16-mixed")
    assert isinstance(plugin.scaler, torch.amp.GradScaler)
    assert plugin.scaler.is_enabled()


def test_bf16_mixed_has_no_grad_scaler():
    assert _mixed("bf16-mixed").scaler is None


def test_16_mixed_uses_the_scaler_it_is_given():
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    assert _mixed("16-mixed", scaler=scaler).scaler is scaler


def test_bf16_mixed_with_a_scaler_is_rejected():
    with pytest.raises(ValueError, match=r"bf16-mixed.*scaler"):
        _mixed("bf16-mixed", scaler=torch.amp.GradScaler("cpu"))


@pytest.mark.parametrize("precision", ["16-true", "32-true", "fp16", "bf16", 16])
def test_mixed_precision_rejects_other_names_naming_the_value(precision):
    with pytest.raises(ValueError, match=rf"precision={precision!r}.*'16-mixed' or 'bf16-mixed'"):
        MixedPrecision(precision, device="cpu")


@pytest.mark.parametrize("precision", ["16-mixed", "32-true", "float16", 16])
def test_half_precision_rejects_other_names_naming_the_value(precision):
    with pytest.raises(ValueError, match=rf"precision={precision!r}.*'16-true' or 'bf16-true'"):
        HalfPrecision(precision)


@pytest.mark.parametrize("device", [torch.device("cpu"), 0, None])
def test_mixed_precision_device_must_be_a_string(device):
    with pytest.raises(TypeError, match=r"device=.*device type string"):
        MixedPrecision("bf16-mixed", device=device)


# -- MixedPrecision: loss scaling and optimizer steps ------------------------------------------------


def _model_and_optimizer(optimizer_cls=torch.optim.SGD, **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    return model, optimizer_cls(model.parameters(), lr=0.1, **kwargs)


def _loss(model: nn.Module) -> torch.Tensor:
    x = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    return model(x).pow(2).mean()


def test_pre_backward_multiplies_the_loss_by_the_scale():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=256.0))
    loss = torch.tensor(1.5)
    assert plugin.pre_backward(loss, None).item() == pytest.approx(384.0)


def test_pre_backward_of_bf16_mixed_leaves_the_loss_alone():
    loss = torch.tensor(1.5)
    assert _mixed("bf16-mixed").pre_backward(loss, None) is loss


def test_optimizer_step_through_the_scaler_applies_the_unscaled_gradient():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    model, optimizer = _model_and_optimizer()
    reference, reference_optimizer = _model_and_optimizer()
    _loss(reference).backward()
    reference_optimizer.step()
    plugin.pre_backward(_loss(model), model).backward()
    plugin.optimizer_step(optimizer)
    torch.testing.assert_close(model.weight, reference.weight)
    torch.testing.assert_close(model.bias, reference.bias)


def test_optimizer_step_calls_the_scaler_update(monkeypatch):
    plugin = _mixed("16-mixed")
    model, optimizer = _model_and_optimizer()
    calls = []
    original_update = plugin.scaler.update
    monkeypatch.setattr(plugin.scaler, "update", lambda *a, **k: calls.append(1) or original_update(*a, **k))
    plugin.pre_backward(_loss(model), model).backward()
    plugin.optimizer_step(optimizer)
    assert calls == [1]


def test_a_step_with_infinite_gradients_is_skipped_and_the_scale_backs_off():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    model, optimizer = _model_and_optimizer()
    before = [p.detach().clone() for p in model.parameters()]
    plugin.pre_backward(_loss(model), model).backward()
    model.weight.grad[0, 0] = float("inf")
    plugin.optimizer_step(optimizer)
    for param, old in zip(model.parameters(), before):
        assert torch.equal(param, old)
    assert plugin.scaler.get_scale() == 512.0


def test_lbfgs_with_16_mixed_is_rejected():
    plugin = _mixed("16-mixed")
    model, optimizer = _model_and_optimizer(torch.optim.LBFGS)
    with pytest.raises(TypeError, match=r"LBFGS.*bf16-mixed"):
        plugin.optimizer_step(optimizer, closure=lambda: _loss(model))


def test_lbfgs_with_bf16_mixed_steps():
    plugin = _mixed("bf16-mixed")
    model, optimizer = _model_and_optimizer(torch.optim.LBFGS)
    before = model.weight.detach().clone()

    def closure():
        optimizer.zero_grad()
        loss = _loss(model)
        loss.backward()
        return loss

    plugin.optimizer_step(optimizer, closure=closure)
    assert not torch.equal(model.weight, before)


def test_unscale_gradients_then_optimizer_step_does_not_unscale_twice():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    model, optimizer = _model_and_optimizer()
    reference, reference_optimizer = _model_and_optimizer()
    _loss(reference).backward()
    reference_optimizer.step()
    plugin.pre_backward(_loss(model), model).backward()
    plugin.unscale_gradients(optimizer)
    plugin.optimizer_step(optimizer)
    torch.testing.assert_close(model.weight, reference.weight)


def test_unscale_gradients_divides_the_gradients_by_the_scale():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    model, _ = _model_and_optimizer()
    reference, _ = _model_and_optimizer()
    _loss(reference).backward()
    plugin.pre_backward(_loss(model), model).backward()
    plugin.unscale_gradients(torch.optim.SGD(model.parameters(), lr=0.1))
    torch.testing.assert_close(model.weight.grad, reference.weight.grad)


def test_state_dict_round_trips_the_scale_after_a_backoff():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    model, optimizer = _model_and_optimizer()
    plugin.pre_backward(_loss(model), model).backward()
    model.weight.grad.fill_(float("nan"))
    plugin.optimizer_step(optimizer)
    state = plugin.state_dict()

    restored = _mixed("16-mixed")
    restored.load_state_dict(state)
    assert restored.scaler.get_scale() == 512.0
    assert restored.state_dict() == state


def test_state_dict_of_bf16_mixed_is_empty():
    assert _mixed("bf16-mixed").state_dict() == {}


# -- a whole training step through Fabric ------------------------------------------------------------

_FABRIC_PRECISIONS = [
    # (flag, canonical name, parameter dtype, warns)
    ("32-true", "32-true", torch.float32, False),
    ("64-true", "64-true", torch.float64, False),
    ("16-true", "16-true", torch.float16, False),
    ("bf16-true", "bf16-true", torch.bfloat16, False),
    ("16-mixed", "16-mixed", torch.float32, False),
    ("bf16-mixed", "bf16-mixed", torch.float32, False),
    (32, "32-true", torch.float32, False),
    ("32", "32-true", torch.float32, False),
    (64, "64-true", torch.float64, False),
    ("64", "64-true", torch.float64, False),
    (16, "16-mixed", torch.float32, True),
    ("16", "16-mixed", torch.float32, True),
    ("bf16", "bf16-mixed", torch.float32, True),
]


def _fabric(flag) -> fabric_core.Fabric:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fabric_core.Fabric(accelerator="cpu", precision=flag)


@functools.cache
def _train(flag, steps: int = 6) -> tuple[set[torch.dtype], list[float], set[torch.dtype]]:
    """Train a small regression model through Fabric; cached so each precision trains once per session."""
    fabric = _fabric(flag)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model, optimizer = fabric.setup(model, optimizer)
    x = torch.randn(32, 4)
    y = x.sum(dim=1, keepdim=True)
    losses, output_dtypes = [], set()
    for _ in range(steps):
        optimizer.zero_grad()
        output = model(x)
        output_dtypes.add(output.dtype)
        loss = nn.functional.mse_loss(output, y)
        fabric.backward(loss)
        optimizer.step()
        losses.append(loss.item())
    return {p.dtype for p in model.parameters()}, losses, output_dtypes


@pytest.mark.parametrize(("flag", "name", "dtype", "warns"), _FABRIC_PRECISIONS)
def test_fabric_precision_flag_resolves_to_the_canonical_precision(flag, name, dtype, warns):
    assert _fabric(flag).precision_plugin.precision == name


@pytest.mark.parametrize(("flag", "name", "dtype", "warns"), _FABRIC_PRECISIONS)
def test_fabric_training_step_keeps_parameters_in_the_precision_dtype(flag, name, dtype, warns):
    parameter_dtypes, _, _ = _train(flag)
    assert parameter_dtypes == {dtype}


@pytest.mark.parametrize(("flag", "name", "dtype", "warns"), _FABRIC_PRECISIONS)
def test_fabric_wrapped_model_returns_float32_outputs(flag, name, dtype, warns):
    _, _, output_dtypes = _train(flag)
    assert output_dtypes == {torch.float32}


@pytest.mark.parametrize(("flag", "name", "dtype", "warns"), _FABRIC_PRECISIONS)
def test_fabric_training_decreases_the_loss(flag, name, dtype, warns):
    _, losses, _ = _train(flag)
    # 16-mixed may skip its first step while the scale backs off from 2**16; the trend must still be down.
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize(("flag", "name", "dtype", "warns"), [p for p in _FABRIC_PRECISIONS if p[3]])
def test_historical_precision_spellings_warn_with_the_canonical_name(flag, name, dtype, warns):
    with pytest.warns(UserWarning, match=rf"precision={flag!r}.*precision={name!r}"):
        fabric_core.Fabric(accelerator="cpu", precision=flag)


@pytest.mark.parametrize(("flag", "name", "dtype", "warns"), [p for p in _FABRIC_PRECISIONS if not p[3]])
def test_canonical_precision_spellings_do_not_warn(flag, name, dtype, warns):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fabric_core.Fabric(accelerator="cpu", precision=flag)


def test_historical_precision_warning_points_at_the_callers_line():
    with pytest.warns(UserWarning, match="kept for compatibility") as record:
        fabric_core.Fabric(accelerator="cpu", precision=16)
    assert record[0].filename == __file__


def test_fabric_16_mixed_on_cpu_gets_a_cpu_grad_scaler():
    plugin = _fabric("16-mixed").precision_plugin
    assert plugin.device == "cpu"
    assert isinstance(plugin.scaler, torch.amp.GradScaler)
