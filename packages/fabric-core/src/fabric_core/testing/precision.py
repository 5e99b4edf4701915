"""Conformance tests for a :class:`~fabric_core.precision.Precision` plugin."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch.nn import Module

from fabric_core.testing._config import required

_CONTEXTS = ["forward_context", "module_init_context", "tensor_init_context"]


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


class PrecisionConformance:
    """Subclass as ``TestMyPrecision`` and set :attr:`precision_factory` to run the checks on it.

    The training checks run a tiny ``Linear`` model with SGD on :attr:`device`, calling the plugin in the
    order Fabric does: ``convert_module``, ``convert_input``, ``forward_context``, ``convert_output``,
    ``pre_backward``, ``backward``, ``post_backward``, ``optimizer_step``.
    """

    #: A zero-argument callable returning a fresh precision instance (the class itself, a lambda, ...).
    precision_factory: Callable[[], Any] | None = None
    #: The device the training checks run on; they skip where it does not exist.
    device: str = "cpu"
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
        loss = precision.pre_backward(self._loss(precision, model), model)
        precision.backward(loss, model)
        precision.post_backward(loss, model)

    def _train(self, precision: Any, model: Module) -> torch.optim.Optimizer:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(self.training_steps):
            optimizer.zero_grad()
            self._backward(precision, model)
            precision.optimizer_step(optimizer)
        return optimizer

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
