"""Conformance tests for a :class:`~fabric_core.strategies.strategy.Strategy`, driven through ``Fabric``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fabric_core.testing._config import required
from fabric_core.testing._two_processes import TwoProcessRun, run_two_processes
from fabric_core.testing.precision import assert_same_state


def _slow(test: Callable) -> Callable:
    """Mark ``test`` ``slow`` where the running project registers that marker; leave it unmarked elsewhere.

    The kit runs inside other projects' pytest configurations: an unregistered marker would be an error
    under ``--strict-markers`` there.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return pytest.mark.slow(test)
    except (Warning, pytest.fail.Exception):
        return test


class StrategyConformance:
    """Subclass as ``TestMyStrategy`` and set :attr:`strategy_factory` to run the checks on it.

    Two groups of checks:

    - **One process** (``test_*`` without ``two_processes`` in the name): each check builds
      ``Fabric(accelerator=accelerator, strategy=strategy_factory(), devices=1)`` in the test process.
      Override :meth:`make_fabric` when your strategy needs other arguments.
    - **Two processes** (``test_two_processes_*``, marked ``slow`` where your pytest configuration
      registers that marker): the kit starts two processes once per test class, ranks 0 and 1 on the
      CPU, and each runs every check in turn; each test then asserts one check's results. Each process
      is set up the way ``fabric run`` sets up the ranks it starts: ``MASTER_ADDR``, ``MASTER_PORT`` (a
      free port), ``WORLD_SIZE=2``, ``NODE_RANK``, ``LOCAL_RANK`` and ``RANK`` in its environment, and
      ``Fabric(accelerator="cpu", strategy=strategy_factory(), devices=2, plugins=[LocalEnvironment()])``
      joins the process group itself (gloo on the CPU), so the strategy's launcher is configured but
      never runs. Checked: the ranks and world size every hook of the strategy sees (when it starts and
      when it returns: ``configure_launcher``, ``setup_environment``, ``setup_module``,
      ``setup_optimizer``, ``module_to_device``, ``backward``, ``optimizer_step``, the collectives,
      ``save_checkpoint``, ``load_checkpoint``, ``teardown``); ``all_reduce``, ``all_gather``,
      ``broadcast`` and ``barrier`` across the ranks; identical models on both ranks after training on
      different data (the gradients are synchronised); ``save`` on both ranks and ``load`` restoring the
      model; and no process group left after ``teardown``. The run is bounded by
      :attr:`process_timeout`: a strategy that hangs fails the checks it did not finish, with what each
      rank was doing.

    The factory must reach the two processes, which receive it pickled (they are forked from a fresh
    fork server, or spawned where the platform has no fork; never forked from the test process, whose
    ``torch.distributed`` state would leak into them): use the strategy class itself or
    ``functools.partial`` of it with picklable arguments, defined at the top level of a module. The test
    module will do, even under ``--import-mode=importlib``: the kit loads it from its file in each rank.

    A strategy that runs one process only (like ``SingleDeviceStrategy``) sets ``processes = 1``: the
    two-process checks then skip.
    """

    #: A zero-argument callable returning a fresh strategy instance.
    strategy_factory: Callable[[], Any] | None = None
    #: The accelerator the one-process checks run on (the two-process checks always run on the CPU).
    accelerator: str = "cpu"
    #: How many steps the training checks take.
    training_steps: int = 10
    #: How many processes the strategy can run: 2 runs the two-process checks, 1 skips them.
    processes: int = 2
    #: Seconds the two processes get for all their checks together before they are ended.
    process_timeout: float = 120.0

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

    # -- two processes -----------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def two_process_run(cls, tmp_path_factory: pytest.TempPathFactory) -> TwoProcessRun:
        """Every two-process check, run once for the test class on ranks 0 and 1."""
        if cls.processes == 1:
            pytest.skip(f"{cls.__name__}.processes = 1: the strategy runs one process only")
        if cls.processes != 2:
            raise ValueError(
                f"{cls.__name__}.processes = {cls.processes!r}: expected 2 (run the two-process checks) "
                "or 1 (the strategy runs one process only; skip them)."
            )
        factory = required(cls(), "strategy_factory", "a zero-argument callable returning a strategy", "MyStrategy")
        directory = tmp_path_factory.mktemp("two_processes")
        modules = [cls.__module__, getattr(factory, "__module__", None) or cls.__module__]
        return run_two_processes(factory, "cpu", cls.training_steps, directory, cls.process_timeout, modules)

    def _values(self, run: TwoProcessRun, check: str) -> dict[int, Any]:
        if check != "setup":
            self._values(run, "setup")  # a failed setup is the finding, not the checks it prevented
        try:
            return run.values(check)
        except AssertionError as err:
            hint = ""
            if check == "setup":
                hint = (
                    "\nIf the strategy runs one process only, set `processes = 1` on the test class to skip the "
                    "two-process checks."
                )
            pytest.fail(f"{err}{hint}", pytrace=False)

    @_slow
    def test_two_processes_are_ranks_0_and_1_of_world_size_2(self, two_process_run: TwoProcessRun) -> None:
        values = self._values(two_process_run, "setup")
        assert [(v["global_rank"], v["world_size"]) for v in values.values()] == [(0, 2), (1, 2)]

    @_slow
    def test_two_processes_every_hook_sees_its_own_rank(self, two_process_run: TwoProcessRun) -> None:
        self._values(two_process_run, "setup")
        for rank, hooks in two_process_run.hooks.items():
            assert hooks, f"rank {rank} recorded no strategy hook"
            expected = {"global_rank": rank, "local_rank": rank, "node_rank": 0, "world_size": 2}
            expected["is_global_zero"] = rank == 0
            seen = [(record, {key: record[key] for key in expected}) for record in hooks]
            wrong = [f"{record['hook']} ({record['when']}): {ranks}" for record, ranks in seen if ranks != expected]
            assert not wrong, f"rank {rank} expected {expected}, but the strategy reported:\n" + "\n".join(wrong)

    @_slow
    def test_two_processes_all_reduce_sums_and_averages_over_the_ranks(self, two_process_run: TwoProcessRun) -> None:
        for rank, value in self._values(two_process_run, "all_reduce").items():
            assert value == {"sum": [3.0, 6.0], "mean": [1.5, 3.0]}, f"rank {rank} got {value}"

    @_slow
    def test_two_processes_all_gather_stacks_the_tensor_of_every_rank(self, two_process_run: TwoProcessRun) -> None:
        for rank, value in self._values(two_process_run, "all_gather").items():
            assert value == [[0.0, 10.0], [1.0, 11.0]], f"rank {rank} got {value}"

    @_slow
    def test_two_processes_broadcast_sends_the_object_of_the_source_rank(self, two_process_run: TwoProcessRun) -> None:
        for rank, value in self._values(two_process_run, "broadcast").items():
            assert value == {"from_0": {"sent by": 0}, "from_1": {"sent by": 1}}, f"rank {rank} got {value}"

    @_slow
    def test_two_processes_barrier_waits_for_the_last_rank(self, two_process_run: TwoProcessRun) -> None:
        values = self._values(two_process_run, "barrier")
        # Rank 1 arrives late on purpose; rank 0 must not leave the barrier before it arrived.
        assert values[0]["returned"] >= values[1]["called"], f"rank 0 left the barrier before rank 1 arrived: {values}"

    @_slow
    def test_two_processes_train_identical_models_on_different_data(self, two_process_run: TwoProcessRun) -> None:
        values = self._values(two_process_run, "training")
        for rank, value in values.items():
            assert all(torch.isfinite(torch.tensor(value["losses"]))), f"rank {rank} losses: {value['losses']}"
            assert value["after"] != value["before"], f"training did not change the model on rank {rank}"
        after = [torch.tensor(values[rank]["after"]) for rank in (0, 1)]
        assert torch.allclose(after[0], after[1], rtol=1e-5, atol=1e-6), (
            "after training on different data per rank, the two ranks' models compute different outputs "
            f"(gradients not synchronised?): rank 0 {after[0].tolist()}, rank 1 {after[1].tolist()}"
        )

    @_slow
    def test_two_processes_save_and_load_restore_the_model(self, two_process_run: TwoProcessRun) -> None:
        for rank, value in self._values(two_process_run, "checkpoint").items():
            assert value["before_load"] != value["saved"], "the model to restore into must start different"
            assert torch.equal(torch.tensor(value["loaded"]), torch.tensor(value["saved"])), (
                f"rank {rank}: the loaded model computes {value['loaded']}, the saved one {value['saved']}"
            )
            assert value["step"] == 7, f"rank {rank}: the plain value 'step' was restored as {value['step']}"

    @_slow
    def test_two_processes_teardown_destroys_the_process_group(self, two_process_run: TwoProcessRun) -> None:
        for rank, value in self._values(two_process_run, "teardown").items():
            assert not value["process_group_left"], f"rank {rank} still has a process group after teardown"
