"""What a program ported from Lightning Fabric relies on: wrappers, backward, checkpoints, callbacks, loggers."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from fabric_core import Fabric
from fabric_core.precision import MixedPrecision, Precision
from fabric_core.precision.precision import needs_fabric_backward
from fabric_core.strategies import SingleDeviceStrategy


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def forward(self, x):
        return self.layer(x)

    def generate(self, x):
        return self.layer(x) * 2

    def describe(self):
        return f"Net with {sum(p.numel() for p in self.parameters())} parameters"


# -- loss.backward() where fabric.backward is needed ----------------------------------------------------


def test_plain_loss_backward_under_16_mixed_is_an_error_naming_fabric_backward():
    fabric = Fabric(accelerator="cpu", precision="16-mixed")
    model = fabric.setup(Net())
    loss = model(torch.randn(2, 4)).sum()
    with pytest.raises(RuntimeError, match=r"fabric\.backward\(loss\)"):
        loss.backward()
    # fabric.backward on a fresh output goes through, scaled by the scaler
    fabric.backward(model(torch.randn(2, 4)).sum())
    scale = fabric.precision_plugin.scaler.get_scale()
    assert scale > 1 and model.module.layer.weight.grad is not None


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "64-true", "bf16-true"])
def test_plain_loss_backward_is_allowed_where_fabric_backward_adds_nothing(precision):
    # bf16-mixed has no scaler: its backward is the plain one (Lightning raises here; see docs/porting.md).
    fabric = Fabric(accelerator="cpu", precision=precision)
    model = fabric.setup(Net())
    dtype = torch.float64 if precision == "64-true" else torch.float32
    model(torch.randn(2, 4, dtype=dtype)).float().sum().backward()
    assert model.module.layer.weight.grad is not None
    assert needs_fabric_backward(fabric.strategy) is False


def test_a_strategy_that_overrides_backward_needs_fabric_backward():
    class LoggingBackward(SingleDeviceStrategy):
        def backward(self, tensor, module, *args, **kwargs):
            self.seen = True
            super().backward(tensor, module, *args, **kwargs)

    strategy = LoggingBackward(device=torch.device("cpu"))
    fabric = Fabric(accelerator="cpu", strategy=strategy)
    assert needs_fabric_backward(strategy)
    model = fabric.setup(Net())
    with pytest.raises(RuntimeError, match=r"fabric\.backward"):
        model(torch.randn(2, 4)).sum().backward()
    fabric.backward(model(torch.randn(2, 4)).sum())
    assert strategy.seen


def test_a_mixed_precision_subclass_overriding_a_backward_hook_needs_fabric_backward():
    class Counting(MixedPrecision):
        def post_backward(self, tensor, module):
            return tensor

    assert Counting("bf16-mixed", device="cpu")._changes_backward()
    assert not MixedPrecision("bf16-mixed", device="cpu")._changes_backward()
    assert MixedPrecision("16-mixed", device="cpu")._changes_backward()


def test_precision_backward_scales_the_loss_itself_as_a_ported_strategy_expects():
    # A strategy written for Lightning calls pre_backward and ignores what it returns, then backward.
    torch.manual_seed(0)
    model = Net()
    reference = copy.deepcopy(model)
    precision = MixedPrecision("16-mixed", device="cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    x = torch.randn(2, 4)
    loss = model(x).sum()
    precision.pre_backward(loss, model)
    precision.backward(loss, model)
    reference(x).sum().backward()
    torch.testing.assert_close(model.layer.weight.grad, reference.layer.weight.grad * 1024.0)
    # the scaler's step unscales what backward scaled: the update equals plain SGD's
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    precision.optimizer_step(optimizer)
    reference_optimizer.step()
    torch.testing.assert_close(model.layer.weight, reference.layer.weight)


# -- methods other than forward under a strategy that wraps the model ----------------------------------


class _Wrapper(nn.Module):
    """Stands in for DDP: a module around the model that must see every forward."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.forwards = 0

    def forward(self, *args, **kwargs):
        self.forwards += 1
        return self.module(*args, **kwargs)


class _WrappingStrategy(SingleDeviceStrategy):
    def setup_module(self, module):
        return _Wrapper(module)


def _wrapped_model():
    fabric = Fabric(accelerator="cpu", strategy=_WrappingStrategy(device=torch.device("cpu")))
    return fabric.setup(Net())


def test_an_unmarked_method_that_runs_the_model_outside_the_wrapper_is_an_error():
    model = _wrapped_model()
    with pytest.raises(RuntimeError, match=r"mark_forward_method\('generate'\)"):
        model.generate(torch.randn(2, 4))
    # nothing stays registered: forward and other methods work afterwards
    model(torch.randn(2, 4))
    assert model._forward_module.forwards == 1


def test_a_marked_method_runs_through_the_wrapper():
    model = _wrapped_model()
    model.mark_forward_method("generate")
    out = model.generate(torch.randn(2, 4))
    assert out.shape == (2, 3) and model._forward_module.forwards == 1


def test_a_method_that_runs_no_submodule_needs_no_marking():
    model = _wrapped_model()
    assert model.describe() == "Net with 15 parameters"


def test_unmarked_methods_are_not_guarded_without_a_strategy_wrapper():
    model = Fabric(accelerator="cpu").setup(Net())
    assert model.generate(torch.randn(2, 4)).shape == (2, 3)


# -- optimizer state, device, copies ---------------------------------------------------------------


def test_the_set_up_optimizer_shows_the_real_state_after_load_state_dict():
    fabric = Fabric(accelerator="cpu")
    net = Net()
    model, optimizer = fabric.setup(net, torch.optim.Adam(net.parameters()))
    fabric.backward(model(torch.randn(2, 4)).sum())
    optimizer.step()
    saved = copy.deepcopy(optimizer.state_dict())
    fabric.backward(model(torch.randn(2, 4)).sum())
    optimizer.step()
    optimizer.load_state_dict(saved)
    assert optimizer.state is optimizer.optimizer.state
    steps = [state["step"].item() for state in optimizer.state.values()]
    assert steps == [1.0, 1.0]
    assert optimizer.param_groups is optimizer.optimizer.param_groups


def test_a_set_up_model_has_a_device():
    fabric = Fabric(accelerator="cpu")
    model = fabric.setup(Net())
    assert model.device == torch.device("cpu")
    assert fabric.setup(nn.ReLU()).device == fabric.device  # no parameters: Fabric's device


def test_a_copy_of_a_set_up_model_runs_its_own_parameters():
    fabric = Fabric(accelerator="cpu", precision="bf16-mixed")
    model = fabric.setup(Net())
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.module.layer.weight.zero_()
        twin.module.layer.bias.zero_()
    x = torch.randn(2, 4)
    assert torch.count_nonzero(twin(x)) == 0
    assert torch.count_nonzero(model(x)) > 0
    restored = pickle.loads(pickle.dumps(model))
    torch.testing.assert_close(restored(x), model(x))


# -- checkpoints -------------------------------------------------------------------------------------


class _Opaque:
    def __init__(self) -> None:
        self.value = 3


def test_load_and_load_raw_take_weights_only(tmp_path):
    fabric = Fabric(accelerator="cpu")
    model = fabric.setup(Net())
    path = tmp_path / "with-object.ckpt"
    fabric.save(path, {"model": model, "extra": _Opaque()})
    with pytest.raises(pickle.UnpicklingError, match="weights_only=True"):  # Lightning's type (torch.load's)
        fabric.load(path, {"model": model}, weights_only=True)
    with pytest.raises(RuntimeError, match="weights_only=False"):  # and a RuntimeError naming the fix
        fabric.load(path, weights_only=True)
    remainder = fabric.load(path, {"model": model}, weights_only=False)
    assert remainder["extra"].value == 3

    raw = tmp_path / "raw.pt"
    torch.save(Net().state_dict(), raw)
    fabric.load_raw(raw, model, weights_only=True)
    with pytest.raises(TypeError, match="weights_only='yes'"):
        fabric.load_raw(raw, model, weights_only="yes")


def test_save_leaves_out_entries_filtered_to_nothing(tmp_path):
    fabric = Fabric(accelerator="cpu")
    model = fabric.setup(Net())
    path = tmp_path / "filtered.ckpt"
    fabric.save(
        path,
        {"model": model, "meta": {"epoch": 3}, "step": 7},
        filter={"model": lambda key, _: key.endswith("bias"), "meta": lambda *_: False},
    )
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint) == {"model", "step"}
    assert list(checkpoint["model"]) == ["layer.bias"]


# -- callbacks and loggers ------------------------------------------------------------------------


def test_call_passes_each_callback_only_the_arguments_it_accepts():
    seen = []

    class Narrow:
        def on_epoch_end(self, loss):
            seen.append(("narrow", loss))

    class Wide:
        def on_epoch_end(self, **kwargs):
            seen.append(("wide", sorted(kwargs)))

    class Positional:
        def on_epoch_end(self, fabric, epoch=None):
            seen.append(("positional", fabric, epoch))

    fabric = Fabric(accelerator="cpu", callbacks=[Narrow(), Wide()])
    fabric.call("on_epoch_end", loss=1.5, epoch=2)
    assert seen == [("narrow", 1.5), ("wide", ["epoch", "loss"])]
    seen.clear()
    Fabric(accelerator="cpu", callbacks=[Positional()]).call("on_epoch_end", "f", epoch=4, loss=0.1)
    assert seen == [("positional", "f", 4)]


def test_a_duck_typed_logger_works_without_subclassing():
    class Jsonl:
        def __init__(self) -> None:
            self.lines = []

        def log_metrics(self, metrics, step=None):
            self.lines.append((step, dict(metrics)))

    logger = Jsonl()
    fabric = Fabric(accelerator="cpu", loggers=logger)
    fabric.log("loss", torch.tensor(0.5), step=1)
    assert fabric.logger is logger and logger.lines == [(1, {"loss": 0.5})]
    fabric.teardown()  # no finalize method: nothing to call


def test_an_object_that_is_no_logger_is_still_refused_naming_what_a_logger_needs():
    with pytest.raises(TypeError, match="log_metrics"):
        Fabric(accelerator="cpu", loggers=[object()])


def test_precision_pre_backward_result_is_not_used():
    class Doubling(Precision):
        def pre_backward(self, tensor, module):
            return tensor * 2  # Lightning ignores this value too

    fabric = Fabric(accelerator="cpu", plugins=Doubling())
    model = fabric.setup(Net())
    reference = copy.deepcopy(model.module)
    x = torch.randn(2, 4)
    fabric.backward(model(x).sum())
    reference(x).sum().backward()
    torch.testing.assert_close(model.module.layer.weight.grad, reference.layer.weight.grad)


# -- moving batches ------------------------------------------------------------------------------------


def test_move_data_to_device_moves_any_object_with_a_to_method():
    from fabric_core.utilities import move_data_to_device

    class Batch:  # e.g. a graph batch: moved by its own `to`
        def __init__(self) -> None:
            self.x = torch.ones(2)

        def to(self, device):
            moved = Batch()
            moved.x = self.x.to(device)
            return moved

    class InPlace:  # a `to` that returns nothing is taken as moved in place
        def __init__(self) -> None:
            self.x = torch.ones(2)

        def to(self, device):
            self.x = self.x.to(device)

    batch, in_place = Batch(), InPlace()
    moved = move_data_to_device({"batch": batch, "in_place": [in_place], "name": "id-3", "t": torch.ones(1)}, "meta")
    assert moved["batch"] is not batch and moved["batch"].x.device.type == "meta"
    assert moved["in_place"][0] is in_place and in_place.x.device.type == "meta"
    assert moved["name"] == "id-3" and moved["t"].device.type == "meta"
