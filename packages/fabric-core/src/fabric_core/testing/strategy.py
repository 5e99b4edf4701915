"""Conformance tests for a :class:`~fabric_core.strategies.strategy.Strategy`, driven through ``Fabric``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fabric_core.testing._config import required
from fabric_core.testing.precision import assert_same_state


class StrategyConformance:
    """Subclass as ``TestMyStrategy`` and set :attr:`strategy_factory` to run the checks on it.

    Every check runs in one process: ``Fabric(accelerator=..., strategy=strategy_factory(), devices=1)``.
    Override :meth:`make_fabric` when your strategy needs other arguments.
    """

    #: A zero-argument callable returning a fresh strategy instance.
    strategy_factory: Callable[[], Any] | None = None
    #: The accelerator the checks run on.
    accelerator: str = "cpu"
    #: How many steps the training check takes before comparing the loss.
    training_steps: int = 10

    def make_fabric(self) -> Any:
        """A launched single-process ``Fabric`` using a fresh strategy from :attr:`strategy_factory`."""
        from fabric_core import Fabric

        factory = required(self, "strategy_factory", "a zero-argument callable returning a strategy", "MyStrategy")
        fabric = Fabric(accelerator=self.accelerator, strategy=factory(), devices=1)
        fabric.launch()
        return fabric

    @pytest.fixture
    def fabric(self) -> Iterator[Any]:
        """A fabric for one check, torn down afterwards (process groups must not leak into the next)."""
        fabric = self.make_fabric()
        yield fabric
        fabric.teardown()

    def _model_and_optimizer(self, fabric: Any, seed: int = 0) -> tuple[Any, Any]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return fabric.setup(model, optimizer)

    def _batch(self, fabric: Any) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
        return fabric.to_device((inputs, inputs.sum(dim=1, keepdim=True)))

    def _step(self, fabric: Any, model: Any, optimizer: Any) -> float:
        inputs, target = self._batch(fabric)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), target)
        fabric.backward(loss)
        optimizer.step()
        return loss.item()

    # -- process layout ----------------------------------------------------------------------------

    def test_one_process_is_global_rank_zero_of_world_size_one(self, fabric: Any) -> None:
        assert (fabric.world_size, fabric.global_rank, fabric.is_global_zero) == (1, 0, True)

    def test_setup_moves_the_model_to_the_fabric_device(self, fabric: Any) -> None:
        model, _ = self._model_and_optimizer(fabric)
        assert all(p.device == fabric.device for p in model.parameters())

    # -- training ----------------------------------------------------------------------------------

    def test_setup_model_trains_and_the_loss_decreases(self, fabric: Any) -> None:
        model, optimizer = self._model_and_optimizer(fabric)
        losses = [self._step(fabric, model, optimizer) for _ in range(self.training_steps)]
        assert all(torch.isfinite(torch.tensor(losses))), f"losses: {losses}"
        assert losses[-1] < losses[0], f"the loss did not decrease: {losses}"

    def test_no_backward_sync_is_a_context_manager_around_backward(self, fabric: Any) -> None:
        model, _ = self._model_and_optimizer(fabric)
        context = fabric.no_backward_sync(model)
        assert hasattr(context, "__enter__") and hasattr(context, "__exit__"), f"got {context!r}"
        inputs, target = self._batch(fabric)
        with context:
            fabric.backward(torch.nn.functional.mse_loss(model(inputs), target))
        assert all(p.grad is not None for p in model.parameters())

    # -- checkpoints -------------------------------------------------------------------------------

    def test_save_and_load_restore_the_parameters_exactly(self, fabric: Any, tmp_path: Path) -> None:
        model, optimizer = self._model_and_optimizer(fabric, seed=0)
        self._step(fabric, model, optimizer)
        path = tmp_path / "checkpoint"
        fabric.save(path, {"model": model, "optimizer": optimizer, "step": 7})

        restored, restored_optimizer = self._model_and_optimizer(fabric, seed=1)
        state = {"model": restored, "optimizer": restored_optimizer, "step": 0}
        fabric.load(path, state)
        for (name, expected), actual in zip(model.state_dict().items(), restored.state_dict().values()):
            assert torch.equal(actual, expected), f"{name} differs after load"
        assert_same_state(restored_optimizer.state_dict(), optimizer.state_dict(), "optimizer.state_dict()")
        assert state["step"] == 7

    def test_load_returns_what_the_state_did_not_ask_for(self, fabric: Any, tmp_path: Path) -> None:
        model, _ = self._model_and_optimizer(fabric)
        fabric.save(tmp_path / "checkpoint", {"model": model, "epoch": 3})
        remainder = fabric.load(tmp_path / "checkpoint", {"model": model})
        assert remainder == {"epoch": 3}

    # -- collectives in one process ----------------------------------------------------------------

    @pytest.mark.parametrize("reduce_op", ["mean", "sum"])
    def test_all_reduce_in_one_process_is_the_tensor(self, fabric: Any, reduce_op: str) -> None:
        tensor = fabric.to_device(torch.tensor([1.0, 2.0, 3.0]))
        result = fabric.all_reduce(tensor.clone(), reduce_op=reduce_op)
        assert torch.equal(result.cpu(), tensor.cpu())

    def test_all_gather_in_one_process_holds_the_tensor(self, fabric: Any) -> None:
        tensor = fabric.to_device(torch.tensor([1.0, 2.0, 3.0]))
        result = fabric.all_gather(tensor)
        # Either the tensor itself or a stack of one: (world_size=1, *shape).
        assert result.numel() == tensor.numel(), f"all_gather returned shape {tuple(result.shape)}"
        assert torch.equal(result.reshape(tensor.shape).cpu(), tensor.cpu())

    def test_broadcast_in_one_process_returns_the_object(self, fabric: Any) -> None:
        assert fabric.broadcast({"seed": 42, "name": "run"}) == {"seed": 42, "name": "run"}

    def test_barrier_in_one_process_returns(self, fabric: Any) -> None:
        fabric.barrier()

    # -- the end -----------------------------------------------------------------------------------

    def test_teardown_after_training_does_not_raise(self) -> None:
        fabric = self.make_fabric()
        model, optimizer = self._model_and_optimizer(fabric)
        self._step(fabric, model, optimizer)
        fabric.teardown()
