"""``FSDPStrategy``: fully sharded data parallel on FSDP2 (``fully_shard`` over a ``DeviceMesh``).

Each parameter, its gradient and its optimizer state are split over the processes (dim-0 shards of a
DTensor); a group of parameters is all-gathered just before the module that owns it runs, and freed
after. Lightning's option names keep their meaning where FSDP2 still has one; ``sharding_strategy``
maps onto the device mesh and on whether parameters are resharded after forward:

- ``FULL_SHARD``: a 1-D mesh over all processes; parameters resharded after forward (gathered again
  in backward).
- ``SHARD_GRAD_OP``: the same mesh; parameters kept whole from forward until backward (ZeRO-2-like:
  more memory, one all-gather less).
- ``HYBRID_SHARD``: a 2-D mesh (replicate, shard), by default (nodes, devices per node): sharded
  within a node, replicated across nodes; resharded after forward.
- ``_HYBRID_SHARD_ZERO2``: ``HYBRID_SHARD`` without resharding after forward.
- ``NO_SHARD``: a 2-D mesh (all processes, 1): every rank holds the whole model and gradients are
  all-reduced, as with DDP.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import timedelta
from typing import Any, Literal

import torch
from torch.nn import Module

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.precision.precision import Precision
from fabric_core.utilities import distributed as collectives
from fabric_fsdp.policies import as_predicate, modules_to_checkpoint, modules_to_shard
from fabric_fsdp.precision import PRECISIONS, FSDPPrecision
from fabric_fsdp.sharded import ShardedStrategy

#: sharding strategy -> (mesh kind, reshard parameters after forward)
SHARDING_STRATEGIES: dict[str, tuple[str, bool]] = {
    "FULL_SHARD": ("shard", True),
    "SHARD_GRAD_OP": ("shard", False),
    "HYBRID_SHARD": ("hybrid", True),
    "_HYBRID_SHARD_ZERO2": ("hybrid", False),
    "NO_SHARD": ("replicate", False),
}

#: FSDP1 options without a meaning in FSDP2, and what to do instead.
_FSDP1_OPTIONS = {
    "use_orig_params": "FSDP2 always trains the original parameters (as DTensors): remove it.",
    "limit_all_gathers": "FSDP2 bounds its all-gathers itself: remove it.",
    "forward_prefetch": "FSDP2 prefetches itself: remove it.",
    "backward_prefetch": "FSDP2 prefetches itself: remove it.",
    "sync_module_states": (
        "each rank shards its own copy of the model: seed every rank alike (fabric.seed_everything) or load a "
        "checkpoint after setup."
    ),
    "param_init_fn": "create the model with fabric.init_module(empty_init=True); reset_parameters() initialises it.",
    "device_id": "the device comes from Fabric(devices=...).",
    "activation_checkpointing": "it is called activation_checkpointing_policy now, e.g. {TransformerBlock}.",
    "ignored_modules": "not supported by fabric-fsdp: every parameter of the model is sharded.",
    "ignored_states": "not supported by fabric-fsdp: every parameter of the model is sharded.",
}


def parse_sharding_strategy(value: Any) -> str:
    """The canonical name of a sharding strategy given as a string (any case) or FSDP1's enum member."""
    name = getattr(value, "name", value)
    if isinstance(name, str) and name.upper() in SHARDING_STRATEGIES:
        return name.upper()
    raise ValueError(
        f"FSDPStrategy(sharding_strategy={value!r}) is not supported: expected one of "
        f"{', '.join(repr(s) for s in SHARDING_STRATEGIES)}."
    )


def _parse_cpu_offload(value: Any) -> tuple[bool, Any]:
    """Whether to offload, and the ``CPUOffloadPolicy`` the user gave (``None``: the strategy picks one)."""
    if value is None or isinstance(value, bool):
        return bool(value), None
    if hasattr(value, "offload_params"):  # FSDP1's CPUOffload(offload_params=...)
        return bool(value.offload_params), None
    from torch.distributed.fsdp import CPUOffloadPolicy

    if isinstance(value, CPUOffloadPolicy):
        return True, value
    raise TypeError(f"FSDPStrategy(cpu_offload={value!r}) must be True, False or a CPUOffloadPolicy.")


def _check_mixed_precision(value: Any) -> Any:
    if value is None:
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if isinstance(value, MixedPrecisionPolicy):
        return value
    raise TypeError(
        f"FSDPStrategy(mixed_precision={value!r}) must be a torch.distributed.fsdp.MixedPrecisionPolicy (FSDP2), "
        "e.g. MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32). Usually the precision "
        "flag is all you need: Fabric(precision='bf16-mixed')."
    )


def _check_device_mesh(value: Any, kind: str, sharding: str) -> Any:
    if value is None:
        return None
    from torch.distributed.device_mesh import DeviceMesh

    if isinstance(value, DeviceMesh):
        dims = value.ndim
    elif isinstance(value, (tuple, list)) and all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value
    ):
        dims = len(value)
        value = tuple(value)
    else:
        raise TypeError(
            f"FSDPStrategy(device_mesh={value!r}) must be a tuple (replicate size, shard size), e.g. (2, 8), or a "
            "torch.distributed.device_mesh.DeviceMesh."
        )
    expected = {"shard": 1, "hybrid": 2}.get(kind)
    if expected is None:
        raise ValueError(
            f"FSDPStrategy(sharding_strategy={sharding!r}) replicates the whole model and takes no device_mesh "
            f"(got {value!r}). Remove device_mesh, or use sharding_strategy='HYBRID_SHARD'."
        )
    if dims != expected:
        hint = (
            "A 2-D mesh (replicate, shard) means hybrid sharding: pass sharding_strategy='HYBRID_SHARD' with it."
            if dims == 2
            else "Hybrid sharding needs a 2-D mesh: (replicate size, shard size), e.g. (num_nodes, devices per node)."
        )
        raise ValueError(f"FSDPStrategy(sharding_strategy={sharding!r}, device_mesh={value!r}): {hint}")
    return value


class FSDPStrategy(ShardedStrategy):
    """Fully sharded data parallel on FSDP2: parameters, gradients and optimizer state split over processes.

    Runs on GPUs over NCCL and on CPUs over gloo. ``Fabric(strategy="fsdp")`` uses the defaults;
    construct it to choose::

        from fabric_fsdp import FSDPStrategy

        strategy = FSDPStrategy(
            auto_wrap_policy={TransformerBlock},                 # one all-gather group per block
            activation_checkpointing_policy={TransformerBlock},  # recompute activations in backward
            sharding_strategy="HYBRID_SHARD", device_mesh=(2, 8),  # shard in a node, replicate across 2
            state_dict_type="full",                              # fabric.save writes one file
        )
        fabric = Fabric(strategy=strategy, devices=8, num_nodes=2, precision="bf16-mixed")

    Args:
        process_group_backend: ``"nccl"``, ``"gloo"``, ... (default: the accelerator's).
        timeout: how long a collective may wait for the other ranks before it fails naming the rank.
        cpu_offload: keep the sharded parameters, gradients and optimizer state in CPU memory (the
            optimizer steps on the CPU); ``True`` or a ``CPUOffloadPolicy``.
        mixed_precision: a ``MixedPrecisionPolicy`` to use instead of the one the precision flag implies.
        auto_wrap_policy: which submodules get their own FSDP group (a set of module classes or a
            callable, see :mod:`fabric_fsdp.policies`); by default only the whole model is one group.
        activation_checkpointing_policy: which submodules recompute their activations in backward,
            given the same way.
        sharding_strategy: ``"FULL_SHARD"`` (default), ``"SHARD_GRAD_OP"``, ``"HYBRID_SHARD"``,
            ``"_HYBRID_SHARD_ZERO2"`` or ``"NO_SHARD"`` (see the module documentation).
        state_dict_type: ``"sharded"`` (default): ``fabric.save`` writes a directory, each rank its own
            shards; ``"full"``: one file, gathered into rank 0's CPU memory.
        device_mesh: for hybrid sharding, ``(replicate size, shard size)`` or a ``DeviceMesh``; for
            ``FULL_SHARD`` and ``SHARD_GRAD_OP``, a 1-D ``DeviceMesh``.
        start_method: how processes start, as for DDP (``"popen"`` re-runs the script).
    """

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        precision: Precision | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = collectives.DEFAULT_TIMEOUT,
        cpu_offload: Any = None,
        mixed_precision: Any = None,
        activation_checkpointing_policy: Any = None,
        sharding_strategy: Any = "FULL_SHARD",
        state_dict_type: Literal["sharded", "full"] = "sharded",
        device_mesh: Any = None,
        *,
        auto_wrap_policy: Any = None,
        checkpoint_io: CheckpointIO | None = None,
        start_method: Literal["popen", "spawn", "fork", "forkserver"] = "popen",
        **kwargs: Any,
    ) -> None:
        _reject_unknown_options(kwargs)
        if precision is not None:
            self._check_precision(precision)
        if state_dict_type not in ("sharded", "full"):
            raise ValueError(
                f"FSDPStrategy(state_dict_type={state_dict_type!r}) must be 'sharded' (a directory, each rank writes "
                "its shards) or 'full' (one file gathered on rank 0)."
            )
        self._sharding_strategy = parse_sharding_strategy(sharding_strategy)
        self._mesh_kind, self._reshard_after_forward = SHARDING_STRATEGIES[self._sharding_strategy]
        self._mesh_option = _check_device_mesh(device_mesh, self._mesh_kind, self._sharding_strategy)
        self._cpu_offload, self._offload_policy = _parse_cpu_offload(cpu_offload)
        self._mixed_precision = _check_mixed_precision(mixed_precision)
        self._auto_wrap_policy = as_predicate(auto_wrap_policy, "FSDPStrategy(auto_wrap_policy=...)")
        self._checkpointing_policy = as_predicate(
            activation_checkpointing_policy, "FSDPStrategy(activation_checkpointing_policy=...)"
        )
        self._state_dict_type = state_dict_type
        self._precision_for_name: Precision | None = None
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision=precision,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
        )

    # -- precision ---------------------------------------------------------------------------------

    @property
    def precision(self) -> Precision:
        # Until Fabric resolves one, 32-bit FSDP precision, as in Lightning (not remembered, so that it
        # never counts as a precision the user gave).
        return self._precision if self._precision is not None else FSDPPrecision("32-true")

    @precision.setter
    def precision(self, precision: Precision | None) -> None:
        if precision is not None:
            self._check_precision(precision)
        self._precision = precision

    def precision_for(self, name: str) -> Precision | None:
        """The five precisions of sharded training are FSDPPrecision; ``"64-true"`` is core's DoublePrecision.

        Any other name is a ``ValueError``, as it is in Lightning.
        """
        if name in PRECISIONS:
            return FSDPPrecision(name)  # type: ignore[arg-type]
        if name == "64-true":
            from fabric_core.precision.double import DoublePrecision

            # Remembered: the one precision instance besides FSDPPrecision this strategy trains with.
            self._precision_for_name = DoublePrecision()
            return self._precision_for_name
        raise ValueError(
            f"{type(self).__name__} cannot train with precision={name!r}: use one of "
            f"{', '.join(repr(p) for p in (*PRECISIONS, '64-true'))}."
        )

    def _check_precision(self, precision: Any) -> None:
        # Lightning's FSDPStrategy takes FSDPPrecision only (a TypeError otherwise): other plugins' loss
        # scalers and casts do not know about sharded parameters.
        if isinstance(precision, FSDPPrecision) or (
            precision is not None and precision is getattr(self, "_precision_for_name", None)
        ):
            return
        raise TypeError(
            f"{type(self).__name__} cannot train with {precision!r}: it needs an FSDPPrecision, whose loss scaler "
            "and mixed-precision policy work on sharded parameters. Pass the precision by name, e.g. "
            "Fabric(precision='bf16-mixed'), or as FSDPStrategy(precision=FSDPPrecision('bf16-mixed'))."
        )

    # -- options -----------------------------------------------------------------------------------

    @property
    def sharding_strategy(self) -> str:
        return self._sharding_strategy

    @property
    def state_dict_type(self) -> str:
        return self._state_dict_type

    @property
    def cpu_offload(self) -> bool:
        return self._cpu_offload

    @property
    def mixed_precision_policy(self) -> Any:
        """The ``MixedPrecisionPolicy`` given to ``fully_shard``: the strategy's, else the precision's."""
        from torch.distributed.fsdp import MixedPrecisionPolicy

        if self._mixed_precision is not None:
            return self._mixed_precision
        policy = self.precision.mixed_precision_policy if isinstance(self.precision, FSDPPrecision) else None
        return policy if policy is not None else MixedPrecisionPolicy()

    @property
    def _full_checkpoints(self) -> bool:
        return self._state_dict_type == "full"

    # -- the device mesh ---------------------------------------------------------------------------

    def connect(self, **resolved: Any) -> None:
        super().connect(**resolved)
        shape = self._mesh_shape()
        world_size = self.num_nodes * self.num_processes
        if shape is not None and self.num_processes and _product(shape) != world_size:
            raise ValueError(
                f"FSDPStrategy(device_mesh={shape}) spans {_product(shape)} processes, but the run has {world_size} "
                f"({self.num_nodes} node(s) x {self.num_processes} device(s)). Make the sizes multiply to {world_size}."
            )

    def _mesh_shape(self) -> tuple[int, ...] | None:
        """The mesh's shape, or ``None`` for a ``DeviceMesh`` given by the user."""
        if self._mesh_option is not None:
            return self._mesh_option if isinstance(self._mesh_option, tuple) else None
        world_size = self.num_nodes * self.num_processes
        if self._mesh_kind == "hybrid":
            return (self.num_nodes, self.num_processes)
        if self._mesh_kind == "replicate":
            return (world_size, 1)
        return (world_size,)

    def _create_device_mesh(self) -> Any:
        from torch.distributed.device_mesh import init_device_mesh

        shape = self._mesh_shape()
        if shape is None:
            mesh = self._mesh_option
            if mesh.size() != self.world_size:
                raise ValueError(
                    f"FSDPStrategy(device_mesh=...) spans {mesh.size()} processes, but the run has {self.world_size}."
                )
            return mesh
        names = ("shard",) if len(shape) == 1 else ("replicate", "shard")
        return init_device_mesh(self.root_device.type, shape, mesh_dim_names=names)

    # -- sharding ----------------------------------------------------------------------------------

    def _parallelize(self, module: Module) -> Module:
        from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, OffloadPolicy, fully_shard

        if any(isinstance(m, FSDPModule) for m in module.modules()):
            return module  # sharded by the user already: keep their layout
        if self._checkpointing_policy is not None:
            from torch.distributed._composable import checkpoint

            # The composable form keeps parameter names unchanged (no wrapper module in the names).
            for submodule in modules_to_checkpoint(module, self._checkpointing_policy):
                checkpoint(submodule)
        offload = OffloadPolicy()
        if self._cpu_offload:
            offload = self._offload_policy or CPUOffloadPolicy(pin_memory=self.root_device.type == "cuda")
        options = {
            "mesh": self.device_mesh,
            "reshard_after_forward": self._reshard_after_forward,
            "mp_policy": self.mixed_precision_policy,
            "offload_policy": offload,
        }
        for submodule in modules_to_shard(module, self._auto_wrap_policy):
            fully_shard(submodule, **options)
        fully_shard(module, **options)
        return module

    @property
    def _materialize_device(self) -> torch.device:
        return torch.device("cpu") if self._cpu_offload else self.root_device

    def _initialization_seed(self) -> AbstractContextManager:
        # DTensor's random operators draw each shard from the same generator on CPU meshes (on GPUs its
        # RNG tracker offsets them): seed by shard index, so that shards differ and replicas agree.
        mesh = self.device_mesh
        if mesh.device_type != "cpu":
            return nullcontext()
        return _seeded_by(mesh.get_local_rank(mesh.ndim - 1))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sharding_strategy={self._sharding_strategy!r}, "
            f"state_dict_type={self._state_dict_type!r}, "
            f"cpu_offload={self._cpu_offload}, backend={self.process_group_backend!r}, "
            f"num_processes={self.num_processes}, num_nodes={self.num_nodes})"
        )


def _product(shape: tuple[int, ...]) -> int:
    result = 1
    for n in shape:
        result *= n
    return result


@contextmanager
def _seeded_by(offset: int) -> Generator[None, None, None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch.initial_seed() + offset)
        yield


def _reject_unknown_options(kwargs: dict[str, Any]) -> None:
    for name in kwargs:
        if name in _FSDP1_OPTIONS:
            raise TypeError(f"FSDPStrategy({name}=...) is an option of FSDP1's wrapper; {_FSDP1_OPTIONS[name]}")
    if kwargs:
        raise TypeError(
            f"FSDPStrategy got unknown options {sorted(kwargs)}. Its options: process_group_backend, timeout, "
            "cpu_offload, mixed_precision, auto_wrap_policy, activation_checkpointing_policy, sharding_strategy, "
            "state_dict_type, device_mesh, start_method."
        )
