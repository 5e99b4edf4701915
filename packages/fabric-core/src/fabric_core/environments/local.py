"""The environment of a plain run: one machine, or nodes started by hand; Fabric starts the processes."""

from __future__ import annotations

import os
import socket

from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.utilities.rank_zero import rank_zero_only


def find_free_port() -> int:
    """A TCP port on the loopback interface that was free when asked."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _standalone_or_free_port() -> int:
    # STANDALONE_PORT pins the port a single-node run would otherwise pick at random (as in Lightning).
    return _int_from_env("STANDALONE_PORT") if os.environ.get("STANDALONE_PORT") else find_free_port()


def _int_from_env(*names: str, default: int = 0) -> int:
    for name in names:
        raw = os.environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"Environment variable {name}={raw!r} must be an integer.") from None
    return default


class EnvironmentKeyError(KeyError):
    """What the cluster environments raise for a missing variable: a ``KeyError``, as in Lightning.

    Unlike a plain ``KeyError``, whose message is shown quoted, its message reads as a sentence.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def required_int_from_env(
    name: str, environment: str, how_to_set: str, error: type[Exception] = EnvironmentKeyError
) -> int:
    """An integer environment variable that ``environment`` cannot work without.

    A missing one raises ``error`` (a ``KeyError`` by default, as reading ``os.environ[name]`` does in
    Lightning's environments) saying how the variable is normally set (``how_to_set``); a malformed
    one raises ``ValueError``.
    """
    if not os.environ.get(name):
        raise error(f"Environment variable {name} is not set, but {environment} reads it. {how_to_set}")
    return _int_from_env(name)


class LocalEnvironment(ClusterEnvironment):
    """No scheduler: Fabric's own launcher starts the processes of each node.

    Reads ``MASTER_ADDR`` (default ``127.0.0.1``), ``MASTER_PORT`` (when unset: ``STANDALONE_PORT``, else a
    free port; either is exported, so processes started later inherit it), ``NODE_RANK`` (else
    torchrun's ``GROUP_RANK``, else 0) and ``LOCAL_RANK``.
    """

    def __init__(self) -> None:
        self._main_port: int | None = None
        self._global_rank = 0
        self._world_size = 1

    @property
    def creates_processes_externally(self) -> bool:
        # A process started by our own launcher carries LOCAL_RANK: it must not launch again.
        return "LOCAL_RANK" in os.environ

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    def main_port(self) -> int:
        if self._main_port is None:
            if os.environ.get("MASTER_PORT"):
                self._main_port = _int_from_env("MASTER_PORT")
            else:
                self._main_port = _standalone_or_free_port()
                os.environ["MASTER_PORT"] = str(self._main_port)
        return self._main_port

    @staticmethod
    def detect() -> bool:
        return True

    def world_size(self) -> int:
        return self._world_size

    def set_world_size(self, size: int) -> None:
        self._world_size = size

    def global_rank(self) -> int:
        return self._global_rank

    def set_global_rank(self, rank: int) -> None:
        self._global_rank = rank
        rank_zero_only.rank = rank  # as in Lightning: rank-zero helpers follow the rank the strategy decided

    def local_rank(self) -> int:
        return _int_from_env("LOCAL_RANK")

    def node_rank(self) -> int:
        return _int_from_env("NODE_RANK", "GROUP_RANK")

    def teardown(self) -> None:
        os.environ.pop("WORLD_SIZE", None)


#: The name this environment has in Lightning Fabric, kept so that porting is an import change.
LightningEnvironment = LocalEnvironment
