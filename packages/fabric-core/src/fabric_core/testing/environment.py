"""Conformance tests for a :class:`~fabric_core.environments.cluster_environment.ClusterEnvironment`."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fabric_core.testing._config import required


class ClusterEnvironmentConformance:
    """Subclass as ``TestMyEnvironment``, set :attr:`environment_factory` and the variables your
    scheduler sets in :attr:`environment_variables` (they are set, and the environment restored,
    around each check).
    """

    #: A zero-argument callable returning a fresh environment (usually the class itself).
    environment_factory: Callable[[], Any] | None = None
    #: The process environment of a job under this scheduler, e.g. ``{"MY_JOB_ID": "1", ...}``.
    environment_variables: dict[str, str] = {}

    @pytest.fixture
    def environment(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
        """An instance created while :attr:`environment_variables` are set."""
        factory = required(
            self,
            "environment_factory",
            "a zero-argument callable returning a ClusterEnvironment",
            "MyEnvironment",
        )
        saved = dict(os.environ)
        for name, value in self.environment_variables.items():
            monkeypatch.setenv(name, value)
        yield factory()
        # Environments may export variables for the processes they start (MASTER_PORT): undo that too.
        os.environ.clear()
        os.environ.update(saved)

    def _environment_cls(self) -> type:
        factory = required(self, "environment_factory", "a zero-argument callable", "MyEnvironment")
        return factory if isinstance(factory, type) else type(factory())

    def test_detect_is_a_staticmethod(self) -> None:
        # Resolution asks the class which environment it runs in, before creating one.
        raw = inspect.getattr_static(self._environment_cls(), "detect")
        assert isinstance(raw, staticmethod), f"{self._environment_cls().__name__}.detect must be a @staticmethod"

    def test_detect_holds_under_the_job_environment(self, environment: Any) -> None:
        detected = type(environment).detect()
        assert detected is True, f"detect() returned {detected!r} with {self.environment_variables}"

    def test_creates_processes_externally_is_a_bool(self, environment: Any) -> None:
        value = environment.creates_processes_externally
        assert isinstance(value, bool), f"creates_processes_externally is {value!r}"

    def test_main_address_is_a_non_empty_string(self, environment: Any) -> None:
        address = environment.main_address
        assert isinstance(address, str) and address, f"main_address is {address!r}"

    def test_main_port_is_a_valid_port(self, environment: Any) -> None:
        port = environment.main_port
        assert isinstance(port, int) and 0 < port < 65536, f"main_port is {port!r}"

    @pytest.mark.parametrize("method", ["world_size", "global_rank", "local_rank", "node_rank"])
    def test_rank_and_size_are_non_negative_ints(self, environment: Any, method: str) -> None:
        value = getattr(environment, method)()
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"{method}() is {value!r}"

    def test_global_rank_is_below_world_size(self, environment: Any) -> None:
        assert environment.global_rank() < environment.world_size()

    def test_setters_accept_what_the_strategy_decides(self, environment: Any) -> None:
        environment.set_world_size(environment.world_size())
        environment.set_global_rank(environment.global_rank())

    def test_teardown_does_not_raise(self, environment: Any) -> None:
        environment.teardown()
