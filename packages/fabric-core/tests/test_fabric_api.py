"""The Fabric API in one CPU process: setup, wrappers, backward, clipping, checkpoints, callbacks, logging."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from fabric_core import Fabric
from fabric_core.loggers import Logger
from fabric_core.strategies import CheckpointKeyError
from fabric_core.wrappers import _FabricDataLoader, _FabricModule, _FabricOptimizer


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)
        self.register_buffer("calls", torch.zeros(()))
        self.custom_attribute = "hello"

    def forward(self, x):
        return self.layer(x)

    def generate(self, x, scale=2.0):
        return self(x) * scale


@pytest.fixture
def fabric():
    return Fabric(accelerator="cpu")


def _model_and_optimizer():
    model = Net()
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


# -- setup --------------------------------------------------------------------------------------------


def test_setup_returns_wrappers_in_the_order_given(fabric):
    model, optimizer = _model_and_optimizer()
    other = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    wrapped = fabric.setup(model, optimizer, other, scheduler=scheduler)
    assert len(wrapped) == 4
    assert isinstance(wrapped[0], _FabricModule)
    assert isinstance(wrapped[1], _FabricOptimizer) and wrapped[1].optimizer is optimizer
    assert isinstance(wrapped[2], _FabricOptimizer) and wrapped[2].optimizer is other
    assert wrapped[3] is scheduler


def test_setup_with_a_model_only_returns_the_model(fabric):
    assert isinstance(fabric.setup(Net()), _FabricModule)


def test_wrapped_optimizer_is_still_an_instance_of_its_class(fabric):
    _, optimizer = fabric.setup(*_model_and_optimizer())
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups is optimizer.optimizer.param_groups


def test_setting_up_a_non_module_is_a_type_error(fabric):
    with pytest.raises(TypeError, match=r"torch.nn.Module.*got str"):
        fabric.setup("model")


def test_setting_up_a_non_optimizer_is_a_type_error(fabric):
    model = Net()
    with pytest.raises(TypeError, match="Optimizer instances after the model, got list"):
        fabric.setup(model, [torch.optim.SGD(model.parameters(), lr=0.1)])


def test_passing_a_scheduler_as_an_optimizer_says_to_use_scheduler(fabric):
    model, optimizer = _model_and_optimizer()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    with pytest.raises(TypeError, match="scheduler="):
        fabric.setup(model, optimizer, scheduler)


def test_setting_up_the_wrapped_model_again_is_an_error(fabric):
    model = fabric.setup(Net())
    with pytest.raises(ValueError, match="already set up"):
        fabric.setup(model)


def test_the_same_plain_model_can_be_set_up_again(fabric):
    # As in Lightning: only a wrapper returned by setup is refused, never the plain module.
    model = Net()
    first = fabric.setup(model)
    second = fabric.setup_module(model)
    assert first is not second and first.module is model and second.module is model


def test_setting_up_a_wrapped_optimizer_again_is_an_error(fabric):
    _, optimizer = fabric.setup(*_model_and_optimizer())
    with pytest.raises(ValueError, match="optimizer that was already set up"):
        fabric.setup_optimizers(optimizer)


def test_a_multi_process_run_without_launch_is_an_error_naming_the_fix():
    fabric = Fabric(accelerator="cpu", devices=2)
    with pytest.raises(RuntimeError, match=r"fabric.setup\(\) needs the processes.*fabric.launch\(\).*fabric run"):
        fabric.setup(Net())
    with pytest.raises(RuntimeError, match="setup_dataloaders"):
        fabric.setup_dataloaders(torch.utils.data.DataLoader(range(4)))


def test_a_compiled_model_is_set_up_underneath_and_compiled_again(fabric):
    model = Net()
    compiled = torch.compile(model, backend="eager")
    wrapped, optimizer = fabric.setup(compiled, torch.optim.SGD(model.parameters(), lr=0.1))
    assert wrapped.module is model
    assert type(wrapped._forward_module) is type(compiled)  # compiled again, around the strategy's module
    assert list(wrapped.state_dict()) == list(model.state_dict())  # no _orig_mod. prefix
    fabric.backward(wrapped(torch.randn(2, 4)).sum())
    optimizer.step()
    with pytest.raises(ValueError, match="already set up"):
        fabric.setup(wrapped)


def test_a_compiled_model_is_kept_as_it_is_without_reapply_compile(fabric):
    compiled = torch.compile(Net(), backend="eager")
    wrapped = fabric.setup(compiled, _reapply_compile=False)
    assert wrapped._forward_module is compiled


def test_setup_module_then_setup_optimizers(fabric):
    model = fabric.setup_module(Net())
    optimizer = fabric.setup_optimizers(torch.optim.SGD(model.parameters(), lr=0.1))
    assert isinstance(optimizer, _FabricOptimizer)
    with pytest.raises(ValueError, match="at least one optimizer"):
        fabric.setup_optimizers()


def test_setup_converts_the_model_to_the_precision():
    fabric = Fabric(accelerator="cpu", precision="64-true")
    model = fabric.setup(Net())
    assert model.layer.weight.dtype == torch.float64


def test_setup_without_move_to_device_leaves_the_model_alone(fabric):
    model = Net()
    fabric.setup(model, move_to_device=False)
    assert model.layer.weight.device.type == "cpu"


# -- the wrapped model --------------------------------------------------------------------------------


def test_wrapped_model_passes_attributes_through(fabric):
    model = fabric.setup(Net())
    assert model.custom_attribute == "hello"
    model.custom_attribute = "changed"
    assert model.module.custom_attribute == "changed"
    model.new_attribute = 3
    assert model.module.new_attribute == 3
    assert model.layer is model.module.layer


def test_wrapped_model_state_dict_has_no_wrapper_prefix(fabric):
    raw = Net()
    model = fabric.setup(raw)
    assert list(model.state_dict()) == list(raw.state_dict())
    fresh = Net()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.layer.weight, raw.layer.weight)


def test_wrapped_model_loads_a_plain_state_dict(fabric):
    source = Net()
    model = fabric.setup(Net())
    model.load_state_dict(source.state_dict())
    assert torch.equal(model.layer.weight, source.layer.weight)


def test_forward_runs_under_the_precision():
    fabric = Fabric(accelerator="cpu", precision="bf16-mixed")
    model = fabric.setup(Net())
    seen = {}
    model.module.layer.register_forward_hook(lambda m, i, o: seen.update(dtype=o.dtype))
    out = model(torch.randn(2, 4))
    assert seen["dtype"] == torch.bfloat16
    assert out.dtype == torch.float32  # outputs come back in the default dtype


def test_mark_forward_method_routes_through_forward_and_the_precision():
    fabric = Fabric(accelerator="cpu", precision="bf16-mixed")
    model = fabric.setup(Net())
    dtypes = []
    model.module.layer.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype) and None)
    model.generate(torch.randn(2, 4))
    assert dtypes == [torch.float32]  # not marked: runs outside autocast
    model.mark_forward_method("generate")
    out = model.generate(torch.randn(2, 4), scale=3.0)
    assert dtypes[-1] == torch.bfloat16
    assert out.dtype == torch.float32
    assert "forward" not in model.module.__dict__  # the temporary redirection was undone


def test_mark_forward_method_rejects_forward_and_missing_methods(fabric):
    model = fabric.setup(Net())
    with pytest.raises(ValueError, match="'forward' already runs"):
        model.mark_forward_method("forward")
    with pytest.raises(AttributeError, match="no method 'sample'"):  # Lightning's type; a ValueError too
        model.mark_forward_method("sample")
    with pytest.raises(TypeError, match="method or its name"):
        model.mark_forward_method(3)


# -- backward, step, clipping -------------------------------------------------------------------------


def test_backward_and_step_update_the_parameters(fabric):
    model, optimizer = fabric.setup(*_model_and_optimizer())
    before = model.layer.weight.detach().clone()
    fabric.backward(model(torch.randn(8, 4)).pow(2).mean())
    optimizer.step()
    assert not torch.equal(before, model.layer.weight)


def test_backward_of_a_non_tensor_is_a_type_error(fabric):
    with pytest.raises(TypeError, match="loss tensor"):
        fabric.backward(1.0)


def test_backward_passes_arguments_through(fabric):
    model, _ = fabric.setup(*_model_and_optimizer())
    loss = model(torch.randn(8, 4)).pow(2).mean()
    fabric.backward(loss, retain_graph=True)
    fabric.backward(loss)  # would fail if retain_graph had not reached torch


def test_optimizer_step_calls_on_after_optimizer_step_callbacks():
    calls = []

    class Callback:
        def on_after_optimizer_step(self, strategy, optimizer):
            calls.append(optimizer)

    fabric = Fabric(accelerator="cpu", callbacks=Callback())
    model, optimizer = fabric.setup(*_model_and_optimizer())
    fabric.backward(model(torch.randn(2, 4)).sum())
    optimizer.step()
    assert calls == [optimizer.optimizer]


def test_lr_scheduler_created_before_setup_sees_the_steps(fabric):
    model, optimizer = _model_and_optimizer()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model, optimizer, scheduler = fabric.setup(model, optimizer, scheduler=scheduler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()" must not appear
        fabric.backward(model(torch.randn(2, 4)).sum())
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_clip_gradients_by_norm_returns_the_norm_before_clipping(fabric):
    model, optimizer = fabric.setup(*_model_and_optimizer())
    fabric.backward(model(torch.randn(8, 4) * 100).sum())
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    norm = fabric.clip_gradients(model, optimizer, max_norm=0.5)
    assert torch.allclose(norm, expected)
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert after <= 0.5 + 1e-5


def test_clip_gradients_by_value(fabric):
    model, optimizer = fabric.setup(*_model_and_optimizer())
    fabric.backward(model(torch.randn(8, 4) * 100).sum())
    assert fabric.clip_gradients(model, optimizer, clip_val=0.01) is None
    assert all(p.grad.abs().max() <= 0.01 for p in model.parameters())


def test_clip_gradients_needs_exactly_one_of_clip_val_and_max_norm(fabric):
    model, optimizer = fabric.setup(*_model_and_optimizer())
    with pytest.raises(ValueError, match="both clip_val and max_norm"):
        fabric.clip_gradients(model, optimizer, clip_val=1, max_norm=1)
    with pytest.raises(ValueError, match=r"clip_val=\.\.\. or max_norm"):
        fabric.clip_gradients(model, optimizer)


def test_clip_gradients_raises_on_a_non_finite_norm_unless_told_not_to(fabric):
    model, optimizer = fabric.setup(*_model_and_optimizer())
    fabric.backward(model(torch.randn(8, 4)).sum())
    model.layer.weight.grad[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite"):
        fabric.clip_gradients(model, optimizer, max_norm=1.0)
    fabric.clip_gradients(model, optimizer, max_norm=1.0, error_if_nonfinite=False)


def test_clip_gradients_with_16_mixed_unscales_first():
    from fabric_core.precision import MixedPrecision

    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    fabric = Fabric(accelerator="cpu", plugins=MixedPrecision("16-mixed", device="cpu", scaler=scaler))
    model, optimizer = fabric.setup(*_model_and_optimizer())
    fabric.backward(model(torch.randn(8, 4)).float().sum())
    norm = fabric.clip_gradients(model, optimizer, max_norm=1e9)
    assert norm < 100  # still scaled, the norm would be about 1024 times larger
    optimizer.step()
    assert scaler.get_scale() == 1024.0  # finite gradients: the step was taken, the scale kept


def test_clip_gradients_with_16_mixed_tolerates_overflow_that_the_scaler_will_skip():
    fabric = Fabric(accelerator="cpu", precision="16-mixed")  # scale 65536 overflows float16 at once
    model, optimizer = fabric.setup(*_model_and_optimizer())
    before = model.layer.weight.detach().clone()
    fabric.backward(model(torch.randn(8, 4) * 10).float().sum())
    fabric.clip_gradients(model, optimizer, max_norm=1.0)
    optimizer.step()
    assert torch.equal(model.layer.weight, before)  # the step was skipped
    assert fabric.precision_plugin.scaler.get_scale() < 65536.0


def test_no_backward_sync_needs_a_set_up_model(fabric):
    with pytest.raises(TypeError, match=r"fabric\.setup"):
        fabric.no_backward_sync(Net())


def test_no_backward_sync_is_a_no_op_on_one_device(fabric):
    model = fabric.setup(Net())
    with fabric.no_backward_sync(model):
        fabric.backward(model(torch.randn(2, 4)).sum())
    assert model.layer.weight.grad is not None


def test_autocast_applies_the_precision_outside_the_model():
    fabric = Fabric(accelerator="cpu", precision="bf16-mixed")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with fabric.autocast():
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32


# -- small utilities ----------------------------------------------------------------------------------


def test_to_device_moves_collections_and_modules(fabric):
    data = {"x": torch.ones(2), "y": [torch.zeros(1)], "n": 3}
    moved = fabric.to_device(data)
    assert moved["n"] == 3 and moved["x"].device.type == "cpu"
    module = Net()
    assert fabric.to_device(module) is module


def test_print_prints_on_rank_zero(fabric, capsys):
    fabric.print("hello", 1)
    assert capsys.readouterr().out == "hello 1\n"


def test_call_invokes_only_callbacks_with_the_hook():
    seen = []

    class A:
        def on_epoch_end(self, results):
            seen.append(("a", results))

    class B:
        on_epoch_end = "not callable"

    fabric = Fabric(accelerator="cpu", callbacks=[A(), B(), object()])
    with pytest.warns(UserWarning, match="not callable"):
        fabric.call("on_epoch_end", results=1)
    fabric.call("undefined_hook")
    assert seen == [("a", 1)]


class RecordingLogger(Logger):
    def __init__(self) -> None:
        self.metrics: list[tuple[dict, Any]] = []
        self.finalized: list[str] = []

    @property
    def name(self):
        return "recording"

    @property
    def version(self):
        return 0

    def log_metrics(self, metrics: Mapping[str, float], step=None) -> None:
        self.metrics.append((dict(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def finalize(self, status: str) -> None:
        self.finalized.append(status)


def test_log_and_log_dict_reach_every_logger_as_python_numbers():
    first, second = RecordingLogger(), RecordingLogger()
    fabric = Fabric(accelerator="cpu", loggers=[first, second])
    fabric.log("loss", torch.tensor(0.5), step=3)
    fabric.log_dict({"a": 1, "b": torch.tensor([2.0])})
    for logger in (first, second):
        assert logger.metrics == [({"loss": 0.5}, 3), ({"a": 1, "b": 2.0}, None)]
    assert fabric.logger is first and fabric.loggers == [first, second]


def test_logging_a_non_scalar_tensor_is_an_error_naming_the_metric():
    fabric = Fabric(accelerator="cpu", loggers=RecordingLogger())
    with pytest.raises(ValueError, match="'acc' is a tensor of shape \\(3,\\)"):
        fabric.log("acc", torch.ones(3))


def test_logger_without_loggers_is_a_clear_error(fabric):
    fabric.log("ignored", 1)  # no loggers: nothing happens
    with pytest.raises(RuntimeError, match="no logger"):
        _ = fabric.logger


def test_launched_function_gets_fabric_and_its_result_is_returned(fabric):
    assert fabric.launch(lambda f, x: (f is fabric, x), 5) == (True, 5)
    assert fabric.launch() is None  # again, without a function: nothing happens


def test_launch_with_a_function_that_takes_no_argument_is_a_type_error(fabric):
    def train():
        pass

    with pytest.raises(TypeError, match=r"train\(\) takes no argument"):
        fabric.launch(train)


def test_launch_with_a_non_callable_is_a_type_error(fabric):
    with pytest.raises(TypeError, match="callable"):
        fabric.launch(3)


def test_run_subclass_is_launched_and_loggers_finalized_at_teardown():
    class MyFabric(Fabric):
        def run(self, value):
            return value * 2

    logger = RecordingLogger()
    fabric = MyFabric(accelerator="cpu", loggers=logger)
    assert fabric.run(21) == 42
    fabric.teardown()
    assert logger.finalized == ["success"]


def test_init_module_creates_parameters_in_the_precision_dtype():
    fabric = Fabric(accelerator="cpu", precision="bf16-true")
    with fabric.init_module():
        layer = nn.Linear(2, 2)
    assert layer.weight.dtype == torch.bfloat16
    assert torch.get_default_dtype() == torch.float32


def test_init_module_with_empty_init_skips_initialisation(fabric):
    # Initialisation draws random numbers; skipping it leaves the generator untouched.
    state = torch.random.get_rng_state()
    with fabric.init_module(empty_init=True):
        nn.Linear(64, 64)
    assert torch.equal(torch.random.get_rng_state(), state)
    with fabric.init_module(empty_init=False):
        nn.Linear(64, 64)
    assert not torch.equal(torch.random.get_rng_state(), state)


def test_init_tensor_uses_the_precision_dtype():
    fabric = Fabric(accelerator="cpu", precision="64-true")
    with fabric.init_tensor():
        assert torch.empty(1).dtype == torch.float64


def test_sharded_model_is_a_deprecated_alias_of_init_module(fabric):
    with pytest.warns(DeprecationWarning, match="init_module"), fabric.sharded_model():
        pass


def test_rank_zero_first_runs_the_block_on_one_process(fabric):
    ran = []
    with fabric.rank_zero_first():
        ran.append(1)
    with fabric.rank_zero_first(local=True):
        ran.append(2)
    assert ran == [1, 2]


# -- collectives in one process -----------------------------------------------------------------------


def test_collectives_in_one_process_return_their_input(fabric):
    data = {"a": torch.tensor([1.0, 2.0]), "b": [3, 4.5]}
    gathered = fabric.all_gather(data)
    assert torch.equal(gathered["a"], data["a"]) and gathered["b"][0].item() == 3
    reduced = fabric.all_reduce(data, reduce_op="sum")
    assert torch.equal(reduced["a"], data["a"])
    assert fabric.broadcast({"x": 1}) == {"x": 1}
    fabric.barrier("named")


def test_unknown_reduce_op_is_an_error_even_in_one_process(fabric):
    with pytest.raises(ValueError, match="Unknown reduce_op 'median'"):
        fabric.all_reduce(torch.ones(1), reduce_op="median")
    with pytest.raises(TypeError, match="not a reduce operation"):
        fabric.all_reduce(torch.ones(1), reduce_op=3)


def test_broadcast_from_a_rank_that_does_not_exist_is_an_error(fabric):
    with pytest.raises(ValueError, match=r"src=1.*\[0, 1\)"):
        fabric.broadcast(1, src=1)


# -- checkpoints --------------------------------------------------------------------------------------


def test_save_and_load_restore_model_optimizer_and_plain_values(fabric, tmp_path):
    model, optimizer = fabric.setup(*_model_and_optimizer())
    fabric.backward(model(torch.randn(4, 4)).sum())
    optimizer.step()
    fabric.save(tmp_path / "ckpt.pt", {"model": model, "optimizer": optimizer, "epoch": 7, "extra": [1, 2]})

    model2, optimizer2 = fabric.setup(*_model_and_optimizer())
    state = {"model": model2, "optimizer": optimizer2, "epoch": 0}
    remainder = fabric.load(tmp_path / "ckpt.pt", state)
    assert state["epoch"] == 7
    assert remainder == {"extra": [1, 2]}
    assert torch.equal(model2.layer.weight, model.layer.weight)
    assert optimizer2.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]


def test_checkpoint_holds_plain_state_dicts_loadable_without_fabric(fabric, tmp_path):
    model = fabric.setup(Net())
    fabric.save(tmp_path / "ckpt.pt", {"model": model})
    raw = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    Net().load_state_dict(raw["model"])


def test_load_without_state_returns_the_whole_checkpoint(fabric, tmp_path):
    fabric.save(tmp_path / "c.pt", {"step": 3, "t": torch.ones(2)})
    loaded = fabric.load(tmp_path / "c.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["t"], torch.ones(2))


def test_save_filter_keeps_only_the_accepted_entries(fabric, tmp_path):
    model = fabric.setup(Net())
    fabric.save(tmp_path / "c.pt", {"model": model}, filter={"model": lambda name, value: "bias" not in name})
    assert set(fabric.load(tmp_path / "c.pt")["model"]) == {"layer.weight", "calls"}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"filter": ["model"]}, TypeError, "dict of callables"),
        ({"filter": {"model": 1}}, TypeError, "not callable"),
        ({"filter": {"optimizer": lambda k, v: True}}, ValueError, r"\['optimizer'\]"),
    ],
)
def test_save_filter_errors(fabric, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        fabric.save(tmp_path / "c.pt", {"model": Net()}, **kwargs)


def test_save_needs_a_dict_and_a_path(fabric, tmp_path):
    with pytest.raises(TypeError, match="dict of named objects"):
        fabric.save(tmp_path / "c.pt", Net())
    with pytest.raises(TypeError, match="path"):
        fabric.save(3, {})


def test_strict_load_names_the_missing_keys(fabric, tmp_path):
    fabric.save(tmp_path / "c.pt", {"model": Net()})
    state = {"model": Net(), "optimizer": torch.optim.SGD(Net().parameters(), lr=1)}
    with pytest.raises(CheckpointKeyError, match=r"\['optimizer'\]"):
        fabric.load(tmp_path / "c.pt", state)
    assert isinstance(CheckpointKeyError("x"), KeyError) and isinstance(CheckpointKeyError("x"), ValueError)
    fabric.load(tmp_path / "c.pt", state, strict=False)


def test_non_strict_load_into_a_model_with_missing_keys(fabric, tmp_path):
    fabric.save(tmp_path / "c.pt", {"model": {"layer.weight": torch.zeros(3, 4)}})
    model = Net()
    fabric.load(tmp_path / "c.pt", {"model": model}, strict=False)
    assert torch.equal(model.layer.weight, torch.zeros(3, 4))
    with pytest.raises(RuntimeError, match="Missing key"):
        fabric.load(tmp_path / "c.pt", {"model": Net()})


def test_loading_a_missing_checkpoint_names_the_path(fabric, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        fabric.load(tmp_path / "nope.pt")


def test_loading_a_truncated_checkpoint_names_the_path(fabric, tmp_path):
    path = tmp_path / "c.pt"
    fabric.save(path, {"model": Net(), "big": torch.randn(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match=r"c\.pt.*corrupt or truncated"):
        fabric.load(path)


def test_load_with_a_non_dict_state_points_to_load_raw(fabric, tmp_path):
    with pytest.raises(TypeError, match="load_raw"):
        fabric.load(tmp_path / "c.pt", Net())


def test_load_raw_reads_a_plain_torch_save(fabric, tmp_path):
    source = Net()
    torch.save(source.state_dict(), tmp_path / "raw.pt")
    model = fabric.setup(Net())
    fabric.load_raw(tmp_path / "raw.pt", model)
    assert torch.equal(model.layer.weight, source.layer.weight)
    optimizer = torch.optim.SGD(source.parameters(), lr=0.3)
    torch.save(optimizer.state_dict(), tmp_path / "opt.pt")
    target = torch.optim.SGD(model.parameters(), lr=1.0)
    fabric.load_raw(tmp_path / "opt.pt", target)
    assert target.param_groups[0]["lr"] == 0.3
    with pytest.raises(TypeError, match="model or optimizer"):
        fabric.load_raw(tmp_path / "raw.pt", {"a": 1})


def test_precision_state_round_trips_through_a_checkpoint(tmp_path):
    fabric = Fabric(accelerator="cpu", precision="16-mixed")
    scaler = fabric.precision_plugin.scaler
    scaler.scale(torch.tensor(1.0))  # the scaler creates its state lazily
    scaler.update(new_scale=123.0)
    fabric.save(tmp_path / "c.pt", {"precision": fabric.precision_plugin})
    other = Fabric(accelerator="cpu", precision="16-mixed")
    other.load(tmp_path / "c.pt", {"precision": other.precision_plugin})
    assert other.precision_plugin.scaler.get_scale() == 123.0


def test_setup_dataloaders_on_cpu_leaves_batches_where_they_are(fabric):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(10.0)), batch_size=4)
    wrapped = fabric.setup_dataloaders(loader)
    assert isinstance(wrapped, _FabricDataLoader)
    assert [len(b[0]) for b in wrapped] == [4, 4, 2]
