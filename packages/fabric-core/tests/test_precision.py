"""The built-in precisions: what they do to modules, inputs, outputs, default dtypes, losses and steps."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import fabric_core
import fabric_core.wrappers
from fabric_core.precision import DoublePrecision, HalfPrecision, MixedPrecision, Precision
from fabric_core.precision.precision import changes_forward
from fabric_core.strategies import SingleDeviceStrategy
from fabric_core.testing.precision import PrecisionConformance, record_hook_calls
from fabric_core.utilities.apply_func import apply_to_collection, convert_fp_collection, convert_fp_tensor
from fabric_core.wrappers import _forward_path

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


def _on_cpu(precision: Precision) -> SingleDeviceStrategy:
    """A strategy holding ``precision``: what a set-up model's forward path is derived from."""
    return SingleDeviceStrategy(device="cpu", precision=precision)


def _loss(model: nn.Module) -> torch.Tensor:
    x = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    return model(x).pow(2).mean()


def test_backward_multiplies_the_loss_by_the_scale():
    # Scaled in backward itself (as in Lightning), so a strategy calling precision.backward(loss) scales.
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=256.0))
    weight = torch.tensor(2.0, requires_grad=True)
    plugin.backward(weight * 1.5, None)
    assert weight.grad.item() == pytest.approx(384.0)


def test_backward_of_bf16_mixed_leaves_the_loss_alone():
    weight = torch.tensor(2.0, requires_grad=True)
    _mixed("bf16-mixed").backward(weight * 1.5, None)
    assert weight.grad.item() == pytest.approx(1.5)


def test_optimizer_step_through_the_scaler_applies_the_unscaled_gradient():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    model, optimizer = _model_and_optimizer()
    reference, reference_optimizer = _model_and_optimizer()
    _loss(reference).backward()
    reference_optimizer.step()
    plugin.backward(_loss(model), model)
    plugin.optimizer_step(optimizer)
    torch.testing.assert_close(model.weight, reference.weight)
    torch.testing.assert_close(model.bias, reference.bias)


def test_optimizer_step_calls_the_scaler_update(monkeypatch):
    plugin = _mixed("16-mixed")
    model, optimizer = _model_and_optimizer()
    calls = []
    original_update = plugin.scaler.update
    monkeypatch.setattr(plugin.scaler, "update", lambda *a, **k: calls.append(1) or original_update(*a, **k))
    plugin.backward(_loss(model), model)
    plugin.optimizer_step(optimizer)
    assert calls == [1]


def test_a_step_with_infinite_gradients_is_skipped_and_the_scale_backs_off():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    model, optimizer = _model_and_optimizer()
    before = [p.detach().clone() for p in model.parameters()]
    plugin.backward(_loss(model), model)
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
    plugin.backward(_loss(model), model)
    plugin.unscale_gradients(optimizer)
    plugin.optimizer_step(optimizer)
    torch.testing.assert_close(model.weight, reference.weight)


def test_unscale_gradients_divides_the_gradients_by_the_scale():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    model, _ = _model_and_optimizer()
    reference, _ = _model_and_optimizer()
    _loss(reference).backward()
    plugin.backward(_loss(model), model)
    plugin.unscale_gradients(torch.optim.SGD(model.parameters(), lr=0.1))
    torch.testing.assert_close(model.weight.grad, reference.weight.grad)


def test_state_dict_round_trips_the_scale_after_a_backoff():
    plugin = _mixed("16-mixed", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    model, optimizer = _model_and_optimizer()
    plugin.backward(_loss(model), model)
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


# -- the forward path, derived from what a precision overrides ----------------------------------------


class _Recorder(Precision):
    """A third-party precision: each overridden forward hook notes its call in ``self.calls``."""

    precision = "recorder"

    def __init__(self) -> None:
        self.calls: list[str] = []


class _ContextOnly(_Recorder):
    """The Precision docstring's example: convert_module and forward_context, nothing else."""

    def convert_module(self, module: nn.Module) -> nn.Module:
        self.calls.append("convert_module")
        return module

    @contextlib.contextmanager
    def forward_context(self):
        self.calls.append("forward_context")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield


class _InputOnly(_Recorder):
    def convert_input(self, data):
        self.calls.append("convert_input")
        return data


class _OutputOnly(_Recorder):
    def convert_output(self, data):
        self.calls.append("convert_output")
        return data


def _forward_through_fabric(precision: Precision, *, as_plugin: bool = True) -> torch.Tensor:
    given = {"plugins": [precision]} if as_plugin else {"precision": precision}
    fabric = fabric_core.Fabric(accelerator="cpu", devices=1, **given)
    try:
        model = fabric.setup_module(nn.Linear(4, 2))
        return model(torch.randn(3, 4))
    finally:
        fabric.teardown()


@pytest.mark.parametrize("as_plugin", [True, False], ids=["plugins", "precision"])
def test_the_docstring_example_precision_runs_its_forward_context_through_fabric(as_plugin):
    precision = _ContextOnly()
    output = _forward_through_fabric(precision, as_plugin=as_plugin)
    assert precision.calls == ["convert_module", "forward_context"]
    assert output.dtype == torch.bfloat16  # the forward really ran under the precision's autocast


def test_a_precision_overriding_only_convert_input_gets_it_called_in_forward():
    precision = _InputOnly()
    _forward_through_fabric(precision)
    assert precision.calls == ["convert_input"]


def test_a_precision_overriding_only_convert_output_gets_it_called_in_forward():
    precision = _OutputOnly()
    _forward_through_fabric(precision)
    assert precision.calls == ["convert_output"]


def test_a_forward_hook_set_on_the_instance_is_called_in_forward():
    precision, calls = Precision(), []
    precision.convert_output = lambda data: calls.append("convert_output") or data
    _forward_through_fabric(precision)
    assert calls == ["convert_output"]


def test_32_true_lets_the_set_up_model_call_the_module_directly():
    module = nn.Linear(2, 2)
    assert _forward_path(module, _on_cpu(Precision())) is module


@pytest.mark.parametrize(
    "factory",
    [_ContextOnly, _InputOnly, _OutputOnly, functools.partial(_mixed, "bf16-mixed"), HalfPrecision, DoublePrecision],
    ids=["forward_context", "convert_input", "convert_output", "bf16-mixed", "16-true", "64-true"],
)
def test_a_precision_overriding_a_forward_hook_puts_the_hooks_in_the_forward_path(factory):
    module = nn.Linear(2, 2)
    assert changes_forward(factory()) and _forward_path(module, _on_cpu(factory())) is not module


def test_a_subclass_that_overrides_no_forward_hook_keeps_the_direct_call():
    class Quiet(Precision):
        def pre_backward(self, tensor, module):
            return tensor

    assert not changes_forward(Quiet())


# -- the conformance kit drives a Fabric-wrapped model ------------------------------------------------


class _KitOnContextOnly(PrecisionConformance):
    precision_factory = _ContextOnly


def test_the_kit_passes_a_precision_whose_hooks_fabric_calls():
    _KitOnContextOnly().test_fabric_calls_every_hook_the_precision_overrides()


def test_the_kit_fails_when_the_set_up_model_skips_the_precision(monkeypatch):
    # The bypass this check exists for: the wrapper calling the module directly despite the overrides.
    monkeypatch.setattr(fabric_core.wrappers, "changes_forward", lambda precision: False)
    with pytest.raises(AssertionError, match=r"never called \['forward_context', 'forward_context\(\) entered'\]"):
        _KitOnContextOnly().test_fabric_calls_every_hook_the_precision_overrides()


def test_the_kit_fails_when_forward_context_is_called_but_never_entered(monkeypatch):
    real = fabric_core.wrappers._forward_path

    def calls_without_entering(module, strategy):
        strategy.precision.forward_context()
        return real(module, _on_cpu(Precision()))

    monkeypatch.setattr(fabric_core.wrappers, "_forward_path", calls_without_entering)
    with pytest.raises(AssertionError, match=r"never called \['forward_context\(\) entered'\]"):
        _KitOnContextOnly().test_fabric_calls_every_hook_the_precision_overrides()


def test_the_kit_leaves_a_precision_class_with_slots_recordable():
    class Slotted(Precision):
        __slots__ = ()

        def convert_input(self, data):
            return data

    expected, calls = record_hook_calls(Slotted())
    assert expected == ["convert_input"] and calls == []


# -- the forward's casts: short paths, same results ----------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        torch.ones(2),
        (torch.ones(2),),
        (torch.ones(2), torch.arange(2), torch.ones(1, dtype=torch.float64)),
        (torch.ones(2), "text", 3),
        (torch.ones(2, dtype=torch.bfloat16),),
        (nn.Parameter(torch.ones(2)),),
        [torch.ones(2)],
        ((torch.ones(2),), {"scale": torch.ones(1)}),
    ],
    ids=["tensor", "one", "several", "mixed-values", "already-bf16", "parameter", "list", "args-kwargs"],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_convert_fp_collection_short_paths_match_the_collection_walk(data, dtype):
    fast, walked = convert_fp_collection(data, dtype), apply_to_collection(data, torch.Tensor, convert_fp_tensor, dtype)
    assert type(fast) is type(walked)
    fast_leaves, walked_leaves = torch.utils._pytree.tree_leaves(fast), torch.utils._pytree.tree_leaves(walked)
    assert len(fast_leaves) == len(walked_leaves)
    for a, b in zip(fast_leaves, walked_leaves):
        if isinstance(b, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b)
        else:
            assert a == b


def test_convert_fp_collection_returns_tensors_already_in_the_dtype_themselves():
    tensor = torch.ones(2, dtype=torch.bfloat16)
    args = (tensor,)
    assert (
        convert_fp_collection(tensor, torch.bfloat16) is tensor and convert_fp_collection(args, torch.bfloat16) is args
    )


def test_keyword_inputs_of_a_set_up_model_are_cast_too():
    class Scaled(nn.Module):
        def forward(self, x, *, scale):
            return x.dtype, scale.dtype

    fabric = fabric_core.Fabric(accelerator="cpu", devices=1, precision="bf16-true")
    try:
        model = fabric.setup_module(Scaled())
        assert model(torch.ones(2), scale=torch.ones(1)) == (torch.bfloat16, torch.bfloat16)
    finally:
        fabric.teardown()


def test_bf16_mixed_training_matches_lightnings_recipe_bit_for_bit():
    # Lightning casts floating inputs to bfloat16, runs forward under autocast and casts the output to the
    # default dtype. The model starts with an operation autocast does not cast, so the input cast shows.
    def model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))

    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    reference = model()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(4):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = reference(x.to(torch.bfloat16))
        optimizer.zero_grad()
        nn.functional.cross_entropy(out.to(torch.float32), y).backward()
        optimizer.step()

    fabric = fabric_core.Fabric(accelerator="cpu", devices=1, precision="bf16-mixed")
    try:
        module = model()
        wrapped, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
        for _ in range(4):
            out = wrapped(x)
            optimizer.zero_grad()
            fabric.backward(nn.functional.cross_entropy(out, y))
            optimizer.step()
    finally:
        fabric.teardown()
    assert out.dtype == torch.float32
    for (name, expected), actual in zip(reference.state_dict().items(), module.state_dict().values()):
        assert torch.equal(actual, expected), name
