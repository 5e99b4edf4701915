"""Lightning parity: the behaviours of issue 11 (point 1), each run on Lightning Fabric and on fabric-core.

Every test runs one small snippet twice in this process, once with Lightning's classes (imported from
``lightning.fabric``) and once with fabric-core's (found through the documented import mapping,
tests/porting/port.py), and compares what can be observed: return values, state, files, and the
*type* of an exception, never its message (fabric-core's messages are worded differently on
purpose). An exception of fabric-core matches when it is an instance of Lightning's type, or of the
nearest non-Lightning base of a Lightning-specific type, so ``except`` clauses written for
Lightning keep working.

Each test also states what Lightning 2.6.6 does (``expected``) and checks that first, so a snippet
that stopped describing Lightning fails as such instead of passing on both libraries by accident.
The one behaviour that needs two processes (``ddp_spawn``) and the message printed by
``seed_everything`` run as scripts in their own interpreters.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import warnings
from argparse import Namespace
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pytest.importorskip(
    "lightning.fabric",
    reason="Lightning is not installed here; `hatch run parity:all` runs this against lightning==2.6.6",
)

# Where each class or function a snippet uses lives in Lightning; fabric-core's home is what the
# import table of docs/porting.md maps it to.
LIGHTNING_HOMES = {
    "Fabric": "lightning.fabric",
    "seed_everything": "lightning.fabric",
    "Logger": "lightning.fabric.loggers",
    "MPSAccelerator": "lightning.fabric.accelerators",
    "FSDPStrategy": "lightning.fabric.strategies",
    "Precision": "lightning.fabric.plugins.precision",
    "MixedPrecision": "lightning.fabric.plugins.precision",
    "FSDPPrecision": "lightning.fabric.plugins.precision",
    "SLURMEnvironment": "lightning.fabric.plugins.environments",
    "TorchElasticEnvironment": "lightning.fabric.plugins.environments",
}


class Library:
    """One of the two libraries: ``lib.Fabric``, ``lib.SLURMEnvironment``, ... resolve to its classes."""

    def __init__(self, name: str, port: Any | None, seed_variable: str) -> None:
        self.name = name
        self._port = port
        #: The variable holding the global seed (renamed on purpose; docs/porting.md "Environment variables").
        self.seed_variable = seed_variable

    def __getattr__(self, name: str) -> Any:
        if name not in LIGHTNING_HOMES:
            raise AttributeError(name)
        module = LIGHTNING_HOMES[name]
        if self._port is not None:
            module = self._port.target_module(module, name, 0)
        return getattr(importlib.import_module(module), name)

    def __repr__(self) -> str:
        return self.name


@pytest.fixture(scope="module")
def lightning() -> Library:
    return Library("lightning", None, "PL_GLOBAL_SEED")


@pytest.fixture(scope="module")
def ours(port) -> Library:
    return Library("fabric-core", port, "FABRIC_GLOBAL_SEED")


# -- observing and comparing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Raises:
    """What a call did when it raised: the exception's type (its message is not compared)."""

    type: type[BaseException]

    def __repr__(self) -> str:
        return f"Raises({self.type.__module__}.{self.type.__qualname__})"


def attempt(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or :class:`Raises` with the type of the exception it raised."""
    try:
        return call()
    except Exception as error:
        return Raises(type(error))


def portable(error_type: type[BaseException]) -> type[BaseException]:
    """The type another library can raise too: Lightning's own exception classes stand for their base."""
    for cls in error_type.__mro__:
        if not cls.__module__.startswith("lightning"):
            return cls
    return Exception


def matches(actual: Any, reference: Any) -> bool:
    """``actual`` is what ``reference`` is: equal values, or an exception of the reference's (portable) type."""
    if isinstance(reference, Raises):
        return isinstance(actual, Raises) and issubclass(actual.type, portable(reference.type))
    if isinstance(reference, (tuple, list)):
        return (
            type(actual) is type(reference)
            and len(actual) == len(reference)
            and all(matches(a, r) for a, r in zip(actual, reference))
        )
    if isinstance(reference, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == reference.keys()
            and all(matches(actual[k], reference[k]) for k in reference)
        )
    return not isinstance(actual, Raises) and actual == reference


@contextlib.contextmanager
def sandbox() -> Iterator[None]:
    """Run a snippet without leaking: environment variables, the process group, torch's default dtype."""
    import torch.distributed as dist

    environ = dict(os.environ)
    default_dtype = torch.get_default_dtype()
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(_free_port())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # snippets that look at warnings record them themselves
            yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        torch.set_default_dtype(default_dtype)
        os.environ.clear()
        os.environ.update(environ)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def observe(snippet: Callable[[Library], Any], library: Library) -> Any:
    with sandbox():
        return attempt(lambda: snippet(library))


def assert_parity(snippet: Callable[[Library], Any], lightning: Library, ours: Library, expected: Any) -> None:
    """``snippet`` does on fabric-core what it does on Lightning, and on Lightning it does ``expected``."""
    reference = observe(snippet, lightning)
    assert matches(reference, expected), (
        f"on Lightning the snippet gives {reference!r}, the test expects {expected!r}: it no longer describes Lightning"
    )
    actual = observe(snippet, ours)
    assert matches(actual, reference), f"fabric-core: {actual!r}\nLightning:   {reference!r}"


PORTING_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "porting.md"


def assert_documented_difference(
    snippet: Callable[[Library], Any], lightning: Library, ours: Library, expected: Any, ours_expected: Any, phrase: str
) -> None:
    """A deliberate difference: Lightning does ``expected``, fabric-core ``ours_expected``, and the guide says so."""
    reference = observe(snippet, lightning)
    assert matches(reference, expected), (
        f"on Lightning the snippet gives {reference!r}, the test expects {expected!r}: it no longer describes Lightning"
    )
    actual = observe(snippet, ours)
    assert matches(actual, ours_expected), f"fabric-core: {actual!r}, expected {ours_expected!r}"
    guide = " ".join(PORTING_GUIDE.read_text(encoding="utf-8").split())
    assert phrase in guide, f"docs/porting.md does not list this difference (no {phrase!r} in it)"


def cpu_fabric(lib: Library, **flags: Any) -> Any:
    return lib.Fabric(accelerator="cpu", devices=1, **flags)


# -- precision ---------------------------------------------------------------------------------------


class WithComplex(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(2))
        self.phase = nn.Parameter(torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64))
        self.register_buffer("spectrum", torch.tensor([0.5j], dtype=torch.complex64))


def test_64_true_keeps_complex_parameters_and_buffers_complex(lightning, ours):
    def snippet(lib):
        model = cpu_fabric(lib, precision="64-true").setup_module(WithComplex())
        inner = model.module
        dtypes = {name: str(t.dtype) for name, t in [*inner.named_parameters(), *inner.named_buffers()]}
        return dtypes, model.phase.detach().imag.tolist(), model.spectrum.imag.tolist()

    expected = (
        {"scale": "torch.float64", "phase": "torch.complex64", "spectrum": "torch.complex64"},
        [2.0, -1.0],
        [0.5],
    )
    assert_parity(snippet, lightning, ours, expected)


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        ("32-true", "backward ran"),
        ("64-true", "backward ran"),
        ("bf16-true", "backward ran"),
        ("16-true", "backward ran"),
        ("16-mixed", Raises(RuntimeError)),  # Lightning runs bf16-mixed on CPU; fabric-core float16 with a scaler
    ],
    ids=["32-true", "64-true", "bf16-true", "16-true", "16-mixed"],
)
def test_loss_backward_on_a_set_up_model_raises_where_fabric_backward_is_needed(lightning, ours, precision, expected):
    def snippet(lib):
        model = cpu_fabric(lib, precision=precision).setup(nn.Linear(4, 1))
        model(torch.randn(3, 4)).sum().backward()
        return "backward ran"

    assert_parity(snippet, lightning, ours, expected)


def test_loss_backward_under_bf16_mixed_is_allowed_as_the_porting_guide_says(lightning, ours):
    # bf16-mixed has no loss scaler, so fabric.backward adds nothing there; Lightning raises anyway.
    def snippet(lib):
        model = cpu_fabric(lib, precision="bf16-mixed").setup(nn.Linear(4, 1))
        model(torch.randn(3, 4)).sum().backward()
        return "backward ran"

    phrase = "`loss.backward()` under `bf16-mixed`"
    assert_documented_difference(snippet, lightning, ours, Raises(RuntimeError), "backward ran", phrase)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_fabric_backward_on_a_set_up_model_runs(lightning, ours, precision):
    def snippet(lib):
        fabric = cpu_fabric(lib, precision=precision)
        model = fabric.setup(nn.Linear(4, 1))
        fabric.backward(model(torch.randn(3, 4)).sum())
        return all(p.grad is not None for p in model.parameters())

    assert_parity(snippet, lightning, ours, True)


def test_precision_backward_scales_the_loss_and_optimizer_step_unscales(lightning, ours):
    """A custom strategy ported from Lightning calls ``precision.backward`` and ``precision.optimizer_step``."""

    def snippet(lib):
        scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
        precision = lib.MixedPrecision(precision="16-mixed", device="cpu", scaler=scaler)
        weight = nn.Parameter(torch.tensor([1.0]))
        optimizer = torch.optim.SGD([weight], lr=1.0)
        precision.backward((weight * 2).sum(), None)
        scaled_grad = weight.grad.item()
        precision.optimizer_step(optimizer)
        return scaled_grad, weight.item()

    assert_parity(snippet, lightning, ours, (16.0, -1.0))


# -- the set-up model and optimizer --------------------------------------------------------------------


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)

    def forward(self, x):
        return self.layer(x)

    def generate(self, x):
        return self.layer(x) * 2

    def describe(self):
        return "a generator"  # runs no submodule


@pytest.mark.parametrize(
    ("strategy", "unmarked"),
    [("ddp", Raises(RuntimeError)), ("auto", [1, 2])],
    ids=["ddp-wraps-forward", "single-device"],
)
def test_a_method_running_submodules_outside_forward_needs_mark_forward_method(lightning, ours, strategy, unmarked):
    def snippet(lib):
        fabric = cpu_fabric(lib, strategy=strategy)
        fabric.launch()
        model = fabric.setup(Generator())
        x = torch.ones(1, 2)
        before = attempt(lambda: list(model.generate(x).shape))
        describe = attempt(model.describe)
        model.mark_forward_method("generate")
        after = attempt(lambda: list(model.generate(x).shape))
        return before, describe, after

    assert_parity(snippet, lightning, ours, (unmarked, "a generator", [1, 2]))


def test_a_set_up_model_has_a_device(lightning, ours):
    def snippet(lib):
        return str(cpu_fabric(lib).setup(nn.Linear(2, 2)).device)

    assert_parity(snippet, lightning, ours, "cpu")


def test_a_plain_module_can_be_set_up_again_but_a_set_up_one_cannot(lightning, ours):
    def snippet(lib):
        fabric = cpu_fabric(lib)
        plain = nn.Linear(2, 2)
        first = fabric.setup(plain)
        again = attempt(lambda: fabric.setup(plain).module is plain)
        again_alone = attempt(lambda: fabric.setup_module(plain).module is plain)
        wrapped = attempt(lambda: fabric.setup(first))
        wrapped_alone = attempt(lambda: fabric.setup_module(first))
        return again, again_alone, wrapped, wrapped_alone

    assert_parity(snippet, lightning, ours, (True, True, Raises(ValueError), Raises(ValueError)))


def test_the_set_up_optimizer_shows_the_state_it_loaded(lightning, ours):
    def snippet(lib):
        source = nn.Linear(2, 1)
        source_optimizer = torch.optim.Adam(source.parameters(), lr=0.1)
        source(torch.ones(1, 2)).sum().backward()
        source_optimizer.step()

        _, optimizer = cpu_fabric(lib).setup(nn.Linear(2, 1), torch.optim.Adam(nn.Linear(2, 1).parameters()))
        empty_before = len(optimizer.state)
        optimizer.load_state_dict(source_optimizer.state_dict())
        return (
            empty_before,
            len(optimizer.state),
            [sorted(state) for state in optimizer.state.values()],
            optimizer.state is optimizer.optimizer.state,
            optimizer.param_groups[0]["lr"],
        )

    assert_parity(snippet, lightning, ours, (0, 2, [["exp_avg", "exp_avg_sq", "step"]] * 2, True, 0.1))


# -- checkpoints ---------------------------------------------------------------------------------------


def test_load_and_load_raw_take_weights_only(lightning, ours, tmp_path):
    def snippet(lib):
        folder = tmp_path / lib.name
        folder.mkdir()
        fabric = cpu_fabric(lib)
        model = fabric.setup(nn.Linear(2, 1))
        fabric.save(folder / "full.ckpt", {"model": model, "step": 3, "config": Namespace(lr=0.1)})
        torch.save(nn.Linear(2, 1).state_dict(), folder / "raw.pt")

        fresh = fabric.setup(nn.Linear(2, 1))
        # A Namespace is not a plain type: refused when only weights may be unpickled.
        restricted = attempt(lambda: fabric.load(folder / "full.ckpt", {"model": fresh}, weights_only=True))
        trusted = attempt(lambda: fabric.load(folder / "full.ckpt", {"model": fresh}, weights_only=False))
        same_weights = all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters()))
        raw = attempt(lambda: fabric.load_raw(folder / "raw.pt", fresh, weights_only=True))
        return restricted, sorted(trusted), trusted["config"].lr, same_weights, raw

    import pickle

    assert_parity(snippet, lightning, ours, (Raises(pickle.UnpicklingError), ["config", "step"], 0.1, True, None))


def test_save_with_a_filter_leaves_out_entries_filtered_to_nothing(lightning, ours, tmp_path):
    def snippet(lib):
        fabric = cpu_fabric(lib)
        model, optimizer = fabric.setup(nn.Linear(2, 1), torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1))
        path = tmp_path / f"{lib.name}.ckpt"
        keep = {
            "model": lambda name, value: name == "weight",
            "optimizer": lambda name, value: False,
            "step": lambda name, value: False,  # not a dict: saved whole, the filter does not apply
        }
        fabric.save(path, {"model": model, "optimizer": optimizer, "step": 1}, filter=keep)
        checkpoint = torch.load(path, weights_only=True)
        return sorted(checkpoint), sorted(checkpoint["model"]), checkpoint["step"]

    assert_parity(snippet, lightning, ours, (["model", "step"], ["weight"], 1))


# -- callbacks and loggers -----------------------------------------------------------------------------


def test_call_passes_each_callback_only_the_keyword_arguments_it_accepts(lightning, ours):
    calls = []

    class TakesLoss:
        def on_step(self, loss):
            calls.append(("TakesLoss", loss))

    class TakesLossAndBatch:
        def on_step(self, batch, loss):
            calls.append(("TakesLossAndBatch", batch, loss))

    class TakesAnything:
        def on_step(self, **kwargs):
            calls.append(("TakesAnything", sorted(kwargs)))

    class TakesPositional:
        def on_epoch(self, epoch):
            calls.append(("TakesPositional", epoch))

    def snippet(lib):
        calls.clear()
        callbacks = [TakesLoss(), TakesLossAndBatch(), TakesAnything(), TakesPositional()]
        fabric = cpu_fabric(lib, callbacks=callbacks)
        fabric.call("on_step", loss=0.5, batch=2, unused="x")
        fabric.call("on_epoch", 7, loss=0.5)
        return list(calls)

    expected = [
        ("TakesLoss", 0.5),
        ("TakesLossAndBatch", 2, 0.5),
        ("TakesAnything", ["batch", "loss", "unused"]),
        ("TakesPositional", 7),
    ]
    assert_parity(snippet, lightning, ours, expected)


class DuckLogger:
    """Has the methods and properties of a logger, subclasses nothing."""

    name = "duck"
    version = 0
    root_dir = None
    log_dir = None
    group_separator = "/"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log_metrics(self, metrics, step=None):
        self.calls.append(("log_metrics", dict(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs):
        self.calls.append(("log_hyperparams", dict(params)))

    def log_graph(self, model, input_array=None):
        pass

    def save(self):
        pass

    def finalize(self, status):
        self.calls.append(("finalize", status))


def lightning_logger_subclass() -> Any:
    """An instance of a subclass of Lightning's own ``Logger``: what a ported program may still hold."""
    from lightning.fabric.loggers import Logger

    class LightningBasedLogger(Logger):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple] = []

        @property
        def name(self):
            return "lightning-based"

        @property
        def version(self):
            return 0

        def log_metrics(self, metrics, step=None):
            self.calls.append(("log_metrics", dict(metrics), step))

        def log_hyperparams(self, params, *args, **kwargs):
            self.calls.append(("log_hyperparams", dict(params)))

    return LightningBasedLogger()


@pytest.mark.parametrize("make_logger", [DuckLogger, lightning_logger_subclass], ids=["duck-typed", "lightning-logger"])
def test_a_logger_is_anything_with_the_logger_methods(lightning, ours, make_logger):
    def snippet(lib):
        logger = make_logger()
        fabric = cpu_fabric(lib, loggers=logger)
        fabric.log("loss", torch.tensor(0.5))
        fabric.log_dict({"acc": 0.75, "n": 3}, step=7)
        return logger.calls, fabric.logger is logger, fabric.loggers == [logger]

    expected = ([("log_metrics", {"loss": 0.5}, None), ("log_metrics", {"acc": 0.75, "n": 3}, 7)], True, True)
    assert_parity(snippet, lightning, ours, expected)


# -- cluster environments ------------------------------------------------------------------------------


def set_environ(variables: dict[str, str | None]) -> None:
    """Set each variable, or unset it where the value is ``None``."""
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def environment_case(
    class_name: str, variables: dict[str, str | None], call: Callable[[Any], Any]
) -> Callable[[Library], Any]:
    """A snippet that sets ``variables`` and calls ``call`` with the library's environment class."""

    def snippet(lib):
        set_environ(variables)
        return call(getattr(lib, class_name))

    return snippet


def ranks(environment_class: Any) -> tuple[int, int, int, int]:
    environment = environment_class()
    return environment.world_size(), environment.global_rank(), environment.local_rank(), environment.node_rank()


TORCHRUN = {
    "TORCHELASTIC_RUN_ID": "job",
    "WORLD_SIZE": "4",
    "RANK": "1",
    "LOCAL_RANK": "1",
    "GROUP_RANK": "0",
    "MASTER_ADDR": "10.0.0.1",
    "MASTER_PORT": "29500",
}


@pytest.mark.parametrize(
    ("variables", "call", "expected"),
    [
        ({"TORCHELASTIC_RUN_ID": "job"}, lambda env: env.detect(), True),
        (
            {"RANK": "0", "GROUP_RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "1"},
            lambda env: env.detect(),
            False,
        ),
        (TORCHRUN, ranks, (4, 1, 1, 0)),
        (TORCHRUN, lambda env: env().validate_settings(num_devices=2, num_nodes=2), None),
        (TORCHRUN, lambda env: env().validate_settings(num_devices=4, num_nodes=1), None),
        (TORCHRUN, lambda env: env().validate_settings(num_devices=2, num_nodes=1), Raises(ValueError)),
        ({}, lambda env: env().world_size(), Raises(KeyError)),
        ({}, lambda env: env().global_rank(), Raises(KeyError)),
        ({}, lambda env: env().local_rank(), Raises(KeyError)),
        ({}, lambda env: env().node_rank(), 0),
    ],
    ids=[
        "detected-by-run-id",
        "not-detected-without-run-id",
        "ranks",
        "validate-2x2",
        "validate-4x1-without-local-world-size",
        "validate-mismatch",
        "missing-world-size",
        "missing-rank",
        "missing-local-rank",
        "missing-group-rank",
    ],
)
def test_torchelastic_environment_follows_torchelastic_variables(lightning, ours, variables, call, expected):
    assert_parity(environment_case("TorchElasticEnvironment", variables, call), lightning, ours, expected)


def test_torchelastic_environment_falls_back_to_a_local_main_address_and_port(lightning, ours):
    def snippet(lib):
        set_environ({**TORCHRUN, "MASTER_ADDR": None, "MASTER_PORT": None})
        env = lib.TorchElasticEnvironment()
        return env.main_address, env.main_port

    assert_parity(snippet, lightning, ours, ("127.0.0.1", 12910))


SRUN = {
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_NNODES": "2",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURM_JOB_NAME": "train",
    "SLURM_NODELIST": "node7 node8",
}


@pytest.mark.parametrize(
    ("variables", "call", "expected"),
    [
        ({"SLURM_NTASKS": "4"}, lambda env: env(), Raises(RuntimeError)),
        ({"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "4"}, lambda env: env().world_size(), 4),
        (SRUN, ranks, (4, 3, 1, 1)),
        ({**SRUN, "MASTER_ADDR": None}, lambda env: env().main_address, "node7"),
        ({}, lambda env: env.resolve_root_node_address("node7 node8"), "node7"),
        ({}, lambda env: env.resolve_root_node_address("host[5-9],other"), "host5"),
        ({}, lambda env: env.resolve_root_node_address("a1,b2"), "a1"),
        ({}, lambda env: env.resolve_root_node_address("gpu[3]"), "gpu3"),
        (SRUN, lambda env: env().validate_settings(num_devices=2, num_nodes=2), None),
        (SRUN, lambda env: env().validate_settings(num_devices=4, num_nodes=2), Raises(ValueError)),
        (SRUN, lambda env: env().validate_settings(num_devices=2, num_nodes=1), Raises(ValueError)),
        ({**SRUN, "SLURM_JOB_NAME": "bash"}, lambda env: env().validate_settings(num_devices=8, num_nodes=8), None),
        (SRUN, lambda env: env.detect(), True),
        ({**SRUN, "SLURM_JOB_NAME": "interactive"}, lambda env: env.detect(), False),
        ({}, lambda env: env.detect(), False),
        ({}, lambda env: env().world_size(), Raises(KeyError)),
        ({}, lambda env: env().global_rank(), Raises(KeyError)),
        ({}, lambda env: env().local_rank(), Raises(KeyError)),
        ({}, lambda env: env().node_rank(), Raises(KeyError)),
    ],
    ids=[
        "ntasks-without-ntasks-per-node",
        "ntasks-with-ntasks-per-node",
        "ranks",
        "main-address-from-a-node-list-with-spaces",
        "root-of-a-list-with-spaces",
        "root-of-a-range",
        "root-of-a-comma-list",
        "root-of-a-single-range",
        "validate-matching",
        "validate-devices-mismatch",
        "validate-nodes-mismatch",
        "validate-skipped-when-interactive",
        "detected-under-srun",
        "not-detected-when-interactive",
        "not-detected-outside-slurm",
        "missing-ntasks",
        "missing-procid",
        "missing-localid",
        "missing-nodeid",
    ],
)
def test_slurm_environment_reads_slurm_variables(lightning, ours, variables, call, expected):
    assert_parity(environment_case("SLURMEnvironment", variables, call), lightning, ours, expected)


# -- seeding -------------------------------------------------------------------------------------------


def seeded(seed_call: Callable[[Any], Any], variable: str | None = None) -> Callable[[Library], Any]:
    """A snippet calling ``seed_everything``: its result, and whether it warned (a UserWarning)."""

    def snippet(lib):
        os.environ.pop(lib.seed_variable, None)
        if variable is not None:
            os.environ[lib.seed_variable] = variable
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = attempt(lambda: seed_call(lib.seed_everything))
        return result, any(issubclass(w.category, UserWarning) for w in caught)

    return snippet


@pytest.mark.parametrize(
    ("seed_call", "variable", "expected"),
    [
        (lambda seed: seed(42), None, (42, False)),
        (lambda seed: seed(3.7), None, (3, False)),
        (lambda seed: seed("12"), None, (12, False)),
        (lambda seed: seed(), None, (0, True)),
        (lambda seed: seed(verbose=False), None, (0, False)),
        (lambda seed: seed(), "17", (17, False)),
        (lambda seed: seed(), "seventeen", (Raises(ValueError), False)),
        (lambda seed: seed(-1), None, (Raises(ValueError), False)),
        (lambda seed: seed(2**32), None, (Raises(ValueError), False)),
        (lambda seed: seed("abc"), None, (Raises(ValueError), False)),
    ],
    ids=[
        "int",
        "float",
        "numeric-string",
        "no-seed-warns",
        "no-seed-quiet",
        "seed-from-the-environment",
        "bad-seed-in-the-environment",
        "negative",
        "too-large",
        "not-a-number",
    ],
)
def test_seed_everything_accepts_and_refuses_what_lightning_does(lightning, ours, seed_call, variable, expected):
    assert_parity(seeded(seed_call, variable), lightning, ours, expected)


SEED_SCRIPT = """\
from lightning.fabric import seed_everything

seed_everything(3.7)
"""


def test_seed_everything_says_which_seed_it_set(tmp_path, port, run_script):
    """In a fresh interpreter, as a user sees it: the seed is announced (Lightning logs "Seed set to 3")."""
    outputs = {}
    for library, source in (("lightning", SEED_SCRIPT), ("fabric-core", port.port_source(SEED_SCRIPT))):
        script = tmp_path / f"seed_{library.replace('-', '_')}.py"
        script.write_text(source)
        run = run_script(script, cwd=tmp_path, timeout=60)
        assert run.returncode == 0, f"{library}:\n{run.tail()}"
        outputs[library] = run.output
    assert "Seed set to 3" in outputs["lightning"], outputs["lightning"]
    assert "Seed set to 3" in outputs["fabric-core"], outputs["fabric-core"]


# -- strategies and accelerators -----------------------------------------------------------------------


def test_fsdp_strategy_refuses_a_precision_it_cannot_use(lightning, ours):
    def snippet(lib):
        refused = attempt(lambda: lib.FSDPStrategy(precision=lib.Precision()))
        accepted = attempt(lambda: type(lib.FSDPStrategy(precision=lib.FSDPPrecision(precision="32-true")).precision))
        return refused, accepted is lib.FSDPPrecision

    assert_parity(snippet, lightning, ours, (Raises(TypeError), True))


def test_mps_accelerator_refuses_a_device_that_is_not_mps(lightning, ours):
    def snippet(lib):
        return lib.MPSAccelerator().setup_device(torch.device("cpu"))

    assert_parity(snippet, lightning, ours, Raises(ValueError))


SPAWN_SCRIPT = """\
import json
import sys

import torch
from lightning.fabric import Fabric


def add_one(fabric, model):
    with torch.no_grad():
        model.weight.add_(1.0)
    fabric.barrier()  # both processes have added their 1.0 before either reads
    return model.weight.item()


if __name__ == "__main__":
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")
    result = fabric.launch(add_one, model)
    print(json.dumps({"rank_0_read": result, "parent_reads": model.weight.item()}))
"""


@pytest.mark.slow
def test_ddp_spawn_gives_each_process_its_own_copy_of_a_model_passed_to_launch(tmp_path, port, run_script):
    """Two processes each add 1.0 to their copy of a zero weight: each reads 1.0, the parent's stays 0.0."""
    results = {}
    for library, source in (("lightning", SPAWN_SCRIPT), ("fabric-core", port.port_source(SPAWN_SCRIPT))):
        script = tmp_path / f"spawn_{library.replace('-', '_')}.py"
        script.write_text(source)
        run = run_script(script, cwd=tmp_path, timeout=120)
        assert run.returncode == 0, f"{library}:\n{run.tail()}"
        results[library] = json.loads(run.output.strip().splitlines()[-1])
    assert results["lightning"] == {"rank_0_read": 1.0, "parent_reads": 0.0}
    assert results["fabric-core"] == results["lightning"]
