"""fabric-core's own plugin: the built-in names, registered exactly like a third-party plugin's."""

from __future__ import annotations

from fabric_core.plugins import hookimpl

_DDP = "fabric_core.strategies.ddp:DDPStrategy"


@hookimpl
def fabric_register_accelerators(registry):
    registry.register("cpu", "fabric_core.accelerators.cpu:CPUAccelerator", description="CPU processes")
    registry.register("mps", "fabric_core.accelerators.mps:MPSAccelerator", description="Apple-silicon GPU")


@hookimpl
def fabric_register_strategies(registry):
    registry.register(
        "single_device",
        "fabric_core.strategies.single_device:SingleDeviceStrategy",
        description="One process on one device",
    )
    registry.register("ddp", _DDP, description="DistributedDataParallel, one process per device (script re-run)")
    registry.register("ddp_spawn", _DDP, description="DDP with processes started by spawn", start_method="spawn")
    registry.register("ddp_fork", _DDP, description="DDP with processes started by fork", start_method="fork")
    registry.register("ddp_notebook", _DDP, description="DDP from a notebook (processes forked)", start_method="fork")
    registry.register(
        "ddp_find_unused_parameters_true",
        _DDP,
        description="DDP that tolerates parameters unused in forward",
        find_unused_parameters=True,
    )
    registry.register(
        "ddp_find_unused_parameters_false",
        _DDP,
        description="DDP that expects every parameter to be used",
        find_unused_parameters=False,
    )
    registry.register(
        "ddp_spawn_find_unused_parameters_true",
        _DDP,
        description="ddp_spawn that tolerates unused parameters",
        start_method="spawn",
        find_unused_parameters=True,
    )


@hookimpl
def fabric_register_precisions(registry):
    registry.register("32-true", "fabric_core.precision.precision:Precision", description="float32")
    registry.register("64-true", "fabric_core.precision.double:DoublePrecision", description="float64")
    registry.register(
        "16-true",
        "fabric_core.precision.half:HalfPrecision",
        description="float16 weights",
        precision="16-true",
    )
    registry.register(
        "bf16-true",
        "fabric_core.precision.half:HalfPrecision",
        description="bfloat16 weights",
        precision="bf16-true",
    )
    registry.register(
        "16-mixed",
        "fabric_core.precision.amp:MixedPrecision",
        description="float16 autocast with loss scaling",
        precision="16-mixed",
    )
    registry.register(
        "bf16-mixed",
        "fabric_core.precision.amp:MixedPrecision",
        description="bfloat16 autocast",
        precision="bf16-mixed",
    )


@hookimpl
def fabric_register_cluster_environments(registry):
    # Detection runs in this order; "local" is the fallback and never detected on its own.
    registry.register("slurm", "fabric_core.environments.slurm:SLURMEnvironment", description="SLURM (srun)")
    registry.register(
        "torchelastic",
        "fabric_core.environments.torchelastic:TorchElasticEnvironment",
        description="torchrun / TorchElastic",
    )
    registry.register("kubeflow", "fabric_core.environments.kubeflow:KubeflowEnvironment", description="Kubeflow")
    registry.register("lsf", "fabric_core.environments.lsf:LSFEnvironment", description="IBM LSF (jsrun)")
    registry.register("mpi", "fabric_core.environments.mpi:MPIEnvironment", description="MPI (needs mpi4py)")
    registry.register("local", "fabric_core.environments.local:LocalEnvironment", description="plain local run")


@hookimpl
def fabric_register_cli_commands(registry):
    # Registered like any plugin's commands, so a plugin command named `run` or `plugins` meets the
    # same rule as any other core name: the built-in is kept and the clash is reported.
    registry.register(
        "run", "fabric_core.cli.run:main", description="Run a training script on several processes and/or nodes"
    )
    registry.register(
        "plugins", "fabric_core.cli.plugins:main", description="List the installed plugins and what they register"
    )
    registry.register(
        "checkpoint",
        "fabric_core.cli.checkpoint:main",
        description="Verify checkpoints without loading them (fabric checkpoint verify PATH...)",
    )
    registry.register(
        "consolidate",
        "fabric_core.cli.consolidate:main",
        description="Turn a checkpoint directory into one file (formats come from plugins: fsdp, deepspeed, ...)",
    )
