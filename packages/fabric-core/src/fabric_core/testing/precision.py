"""Conformance tests for a :class:`~fabric_core.precision.Precision` plugin."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch.nn import Module

from fabric_core.precision.precision import Precision
from fabric_core.testing._config import required

_CONTEXTS = ["forward_context", "module_init_context", "tensor_init_context"]
#: The hooks a Fabric training step calls, in the order it calls them.
_STEP_HOOKS = (
    "convert_module",
    "convert_input",
    "forward_context",
    "convert_output",
    "pre_backward",
    "backward",
    "post_backward",
    "optimizer_step",
)
_ENTERED = "forward_context() entered"


def assert_same_state(actual: Any, expected: Any, where: str = "state_dict()") -> None:
    """Deep equality of two state dicts whose leaves may be tensors."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and torch.equal(actual.cpu(), expected.cpu()), where
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), f"{where} keys differ"
        for key in expected:
            assert_same_state(actual[key], expected[key], f"{where}[{key!r}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


class _EnteredContext:
    """The context ``forward_context()`` returned, noting that the forward really ran inside it."""

    def __init__(self, manager: Any, calls: list[str]) -> None:
        self._manager = manager
        self._calls = calls

    def __enter__(self) -> Any:
        self._calls.append(_ENTERED)
        return self._manager.__enter__()

    def __exit__(self, *exc_info: Any) -> Any:
        return self._manager.__exit__(*exc_info)


def overridden_step_hooks(precision_cls: type) -> list[str]:
    """The training-step hooks ``precision_cls`` defines itself rather than inheriting :class:`Precision`'s."""
    if not issubclass(precision_cls, Precision):
        return list(_STEP_HOOKS)
    return [hook for hook in _STEP_HOOKS if getattr(precision_cls, hook) is not getattr(Precision, hook)]


def record_hook_calls(precision: Any) -> tuple[list[str], list[str]]:
    """Make ``precision`` note each call of a hook its class overrides; returns (expected, calls).

    The instance is moved to a subclass that overrides exactly the hooks its class overrides, each
    noting the call and then running the class's own. The set of overridden hooks, which Fabric derives
    the forward path from, is therefore the same as before, and nothing is set on the instance: a
    forward path that skips an overridden hook shows as a missing call.
    """
    cls = type(precision)
    expected = overridden_step_hooks(cls)
    calls: list[str] = []

    def recorder(hook: str) -> Any:
        def record(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(hook)
            result = getattr(super(recording, self), hook)(*args, **kwargs)
            return _EnteredContext(result, calls) if hook == "forward_context" else result

        record.__name__ = record.__qualname__ = hook
        return record

    namespace: dict[str, Any] = {"__slots__": (), "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    recording = type(cls.__name__, (cls,), {**namespace, **{hook: recorder(hook) for hook in expected}})
    precision.__class__ = recording
    if "forward_context" in expected:
        expected.insert(expected.index("forward_context") + 1, _ENTERED)
    return expected, calls


class PrecisionConformance:
    """Subclass as ``TestMyPrecision`` and set :attr:`precision_factory` to run the checks on it.

    The training checks run a tiny ``Linear`` model with SGD on :attr:`device`, calling the plugin in the
    order Fabric does: ``convert_module``, ``convert_input``, ``forward_context``, ``convert_output``,
    ``pre_backward``, ``backward``, ``post_backward``, ``optimizer_step``. The ``fabric`` checks then
    run the same step through ``Fabric(plugins=[precision])`` and require that every one of those hooks
    the precision's class overrides is called, and that the set-up model returns the default dtype.
    """

    #: A zero-argument callable returning a fresh precision instance (the class itself, a lambda, ...).
    precision_factory: Callable[[], Any] | None = None
    #: The device the training checks run on; they skip where it does not exist.
    device: str = "cpu"
    #: The ``strategy`` argument of the Fabric the ``fabric`` checks build (``None``: Fabric's choice for one
    #: device). Set it when the precision only works under its own strategy.
    strategy: Any = None
    #: How many steps the training checks take. Loss scalers may skip the first steps while they
    #: calibrate (float16 overflows at the initial scale), so one step is not enough to see a change.
    training_steps: int = 5

    @pytest.fixture(autouse=True)
    def _restore_default_dtype(self) -> Iterator[None]:
        # A precision that leaks its dtype fails its own check; it must not fail every later test too.
        dtype = torch.get_default_dtype()
        yield
        torch.set_default_dtype(dtype)

    # -- helpers -----------------------------------------------------------------------------------

    def _precision(self) -> Any:
        factory = required(self, "precision_factory", "a zero-argument callable returning a precision", "MyPrecision")
        return factory()

    def _device(self) -> torch.device:
        device = torch.device(self.device)
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as err:  # torch raises AssertionError for a CUDA-less build
            pytest.skip(f"device {self.device!r} is not usable here: {err}")
        return device

    def _model(self, precision: Any) -> Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = torch.nn.Linear(4, 1).to(self._device())
        converted = precision.convert_module(module)
        assert isinstance(converted, Module), f"convert_module returned {type(converted).__name__}, not a Module"
        return converted

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(1)
        inputs = torch.randn(8, 4, generator=generator)
        return inputs.to(self._device()), inputs.sum(dim=1, keepdim=True).to(self._device())

    def _loss(self, precision: Any, model: Module) -> torch.Tensor:
        inputs, target = self._batch()
        with precision.forward_context():
            output = model(precision.convert_input(inputs))
        output = precision.convert_output(output)
        loss = torch.nn.functional.mse_loss(output.float(), target)
        assert torch.isfinite(loss), f"the loss is {loss.item()}"
        return loss

    def _backward(self, precision: Any, model: Module) -> None:
        loss = self._loss(precision, model)
        precision.pre_backward(loss, model)
        precision.backward(loss, model)
        precision.post_backward(loss, model)

    def _train(self, precision: Any, model: Module) -> torch.optim.Optimizer:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(self.training_steps):
            optimizer.zero_grad()
            self._backward(precision, model)
            precision.optimizer_step(optimizer)
        return optimizer

    def _fabric_step(self, precision: Any) -> torch.Tensor:
        """One training step of the tiny model through a Fabric that uses ``precision``; returns the output."""
        from fabric_core import Fabric

        device = self._device()
        strategy = {} if self.strategy is None else {"strategy": self.strategy}
        fabric = Fabric(accelerator=device.type, devices=1, plugins=[precision], **strategy)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                module = torch.nn.Linear(4, 1)
            model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.05))
            inputs, target = self._batch()
            output = model(inputs)
            fabric.backward(torch.nn.functional.mse_loss(output.float(), target))
            optimizer.step()
        finally:
            fabric.teardown()
        return output

    # -- modules and contexts ----------------------------------------------------------------------

    def test_convert_module_returns_a_module(self) -> None:
        self._model(self._precision())

    @pytest.mark.parametrize("context", _CONTEXTS)
    def test_context_restores_the_default_dtype(self, context: str) -> None:
        before = torch.get_default_dtype()
        manager = getattr(self._precision(), context)()
        assert hasattr(manager, "__enter__") and hasattr(manager, "__exit__"), f"{context}() is no context manager"
        with manager:
            pass
        assert torch.get_default_dtype() == before

    @pytest.mark.parametrize("context", _CONTEXTS)
    def test_context_restores_the_default_dtype_when_the_block_raises(self, context: str) -> None:
        before = torch.get_default_dtype()
        with pytest.raises(KeyError, match="raised inside"), getattr(self._precision(), context)():
            raise KeyError("raised inside")
        assert torch.get_default_dtype() == before

    def test_convert_output_returns_the_default_dtype(self) -> None:
        precision = self._precision()
        model = self._model(precision)
        inputs, _ = self._batch()
        with precision.forward_context():
            output = model(precision.convert_input(inputs))
        assert precision.convert_output(output).dtype == torch.get_default_dtype()

    # -- training ----------------------------------------------------------------------------------

    def test_training_steps_change_the_parameters(self) -> None:
        precision = self._precision()
        model = self._model(precision)
        before = copy.deepcopy(model.state_dict())
        self._train(precision, model)
        changed = [name for name, value in model.state_dict().items() if not torch.equal(value, before[name])]
        assert changed, f"no parameter changed after {self.training_steps} training steps"

    def test_training_steps_leave_finite_parameters(self) -> None:
        precision = self._precision()
        model = self._model(precision)
        self._train(precision, model)
        for name, parameter in model.named_parameters():
            assert torch.isfinite(parameter).all(), f"parameter {name} is not finite after training"

    def test_unscale_gradients_returns_gradients_to_the_loss_scale(self) -> None:
        # Clipping runs on unscaled gradients: compare with the same step in plain float32.
        precision = self._precision()
        model = self._model(precision)
        optimizer = self._train(precision, model)
        optimizer.zero_grad()
        self._backward(precision, model)
        precision.unscale_gradients(optimizer)
        reference = copy.deepcopy(model).float()
        reference.zero_grad(set_to_none=True)
        inputs, target = self._batch()
        torch.nn.functional.mse_loss(reference(inputs), target).backward()
        for (name, parameter), expected in zip(model.named_parameters(), reference.parameters()):
            norm, expected_norm = parameter.grad.float().norm(), expected.grad.norm()
            assert torch.isfinite(norm), f"the gradient of {name} is not finite after unscale_gradients"
            assert 0.5 <= (norm / expected_norm).item() <= 2.0, (
                f"the gradient norm of {name} is {norm.item():.4g} after unscale_gradients, but "
                f"{expected_norm.item():.4g} in float32: is it still scaled?"
            )

    # -- through Fabric ----------------------------------------------------------------------------

    def test_fabric_calls_every_hook_the_precision_overrides(self) -> None:
        precision = self._precision()
        expected, calls = record_hook_calls(precision)
        self._fabric_step(precision)
        missing = [hook for hook in expected if hook not in calls]
        assert not missing, (
            f"a training step through Fabric never called {missing} of {type(precision).__name__}, which "
            f"overrides them (calls seen: {calls}): the set-up model or optimizer bypassed the precision"
        )

    def test_fabric_wrapped_model_returns_the_default_dtype(self) -> None:
        output = self._fabric_step(self._precision())
        assert output.dtype == torch.get_default_dtype(), (
            f"the set-up model returned {output.dtype}, expected the default dtype {torch.get_default_dtype()}"
        )

    def test_main_params_yields_the_optimizer_parameters(self) -> None:
        precision = self._precision()
        model = self._model(precision)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        expected = [id(p) for group in optimizer.param_groups for p in group["params"]]
        assert [id(p) for p in precision.main_params(optimizer)] == expected

    # -- checkpoints -------------------------------------------------------------------------------

    def test_state_dict_is_a_dict(self) -> None:
        precision = self._precision()
        self._train(precision, self._model(precision))
        assert isinstance(precision.state_dict(), dict)

    def test_load_state_dict_restores_the_state_on_a_fresh_instance(self) -> None:
        trained = self._precision()
        self._train(trained, self._model(trained))
        fresh = self._precision()
        fresh.load_state_dict(trained.state_dict())
        assert_same_state(fresh.state_dict(), trained.state_dict())
