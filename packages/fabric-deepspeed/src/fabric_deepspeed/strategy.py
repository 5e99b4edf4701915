"""``DeepSpeedStrategy``: ZeRO stages 1-3 and offloading through DeepSpeed's engine, on CPUs (gloo) and GPUs.

- Stage 1 partitions the optimizer state over the processes, stage 2 the gradients too, stage 3 the
  parameters too (gathered just before each module runs). Offloading moves the optimizer state
  (stage 2 and 3) and the parameters (stage 3) to the CPU or to NVMe.
- ``fabric.setup(model, optimizer)`` hands both to ``deepspeed.initialize``; the model becomes a
  ``DeepSpeedEngine``, the optimizer DeepSpeed's ZeRO optimizer around yours. ``fabric.backward``
  runs ``engine.backward`` and ``optimizer.step()`` runs ``engine.step()``.
- The process group is fabric-core's (as with DDP: launcher, timeouts, hang reports); DeepSpeed's
  communication layer joins it.
"""

from __future__ import annotations

import copy
import gc
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.optim import Optimizer

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.precision.precision import Precision
from fabric_core.strategies.ddp import DDPStrategy
from fabric_core.utilities import distributed as collectives
from fabric_deepspeed import config as ds_config
from fabric_deepspeed import runtime
from fabric_deepspeed.build_locks import check_build_locks
from fabric_deepspeed.precision import PRECISIONS, DeepSpeedPrecision

_CLIPPING = (
    "DeepSpeed clips gradients itself, inside its optimizer step: set the config's 'gradient_clipping', e.g. "
    "DeepSpeedStrategy(config={{..., 'gradient_clipping': {value}}}), and remove the fabric.clip_gradients() call."
)


class DeepSpeedStrategy(DDPStrategy):
    """DeepSpeed ZeRO: optimizer state (stage 1), gradients (2) and parameters (3) partitioned over processes.

    ``Fabric(strategy="deepspeed_stage_3")`` uses the defaults; construct it to choose::

        from fabric_deepspeed import DeepSpeedStrategy

        strategy = DeepSpeedStrategy(stage=3, offload_optimizer=True, offload_parameters=True)
        fabric = Fabric(strategy=strategy, devices=2, precision="bf16-mixed")
        fabric.launch()
        with fabric.init_module(empty_init=True):  # stage 3: created already partitioned
            model = Transformer()
        model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters()))

    The arguments are Lightning's, with the same meanings and defaults. They build a DeepSpeed config
    (:attr:`config`, a dict you can inspect), unless ``config`` is given: a dict or the path of a JSON
    file, which is used as it is and wins over every argument that would build one. The precision flag
    adds the matching ``bf16``/``fp16`` section when the config has none, and
    ``train_micro_batch_size_per_gpu`` defaults to 1.

    Args:
        zero_optimization: use ZeRO (``False``: DeepSpeed's plain data parallelism).
        stage: 1, 2 or 3 (0 turns ZeRO off).
        remote_device: where ``init_module`` creates the partitioned parameters under stage 3 (``"cpu"``,
            ``"nvme"``; default: the process's device).
        offload_optimizer: keep the optimizer state on ``offload_optimizer_device`` (stage 2 and 3).
        offload_parameters: keep the parameters on ``offload_params_device`` (stage 3).
        offload_params_device, offload_optimizer_device: ``"cpu"`` or ``"nvme"``.
        nvme_path: the folder NVMe offloading writes to.
        params_buffer_count, params_buffer_size, max_in_cpu, optimizer_buffer_count, block_size,
            queue_depth, single_submit, overlap_events, thread_count, pin_memory: NVMe and offload tuning.
        sub_group_size, contiguous_gradients, overlap_comm, allgather_partitions, reduce_scatter,
            allgather_bucket_size, reduce_bucket_size: ZeRO tuning (``zero_optimization`` keys).
        zero_allow_untested_optimizer: allow optimizers DeepSpeed has not tested with ZeRO.
        logging_batch_size_per_gpu: ``train_micro_batch_size_per_gpu`` for DeepSpeed's throughput logs.
        config: a DeepSpeed config dict or the path of a JSON file; wins over the arguments above.
        logging_level: the level of DeepSpeed's logger (default ``logging.WARN``).
        loss_scale, initial_scale_power, loss_scale_window, hysteresis, min_loss_scale: float16 loss
            scaling (``loss_scale=0`` is dynamic).
        partition_activations, cpu_checkpointing, contiguous_memory_optimization,
            synchronize_checkpoint_boundary: DeepSpeed's activation checkpointing options.
        load_full_weights: ``fabric.load`` reads a single-file full state dict (e.g. a consolidated
            checkpoint) into the partitioned model, instead of a DeepSpeed checkpoint directory.
        process_group_backend: ``"gloo"``, ``"nccl"``, ... (default: the accelerator's).
        timeout: how long a collective may wait for the other ranks (default 30 minutes).
        exclude_frozen_parameters: leave parameters without gradients out of checkpoints.
    """

    supports_separate_optimizer_setup = False

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        zero_optimization: bool = True,
        stage: int = 2,
        remote_device: str | None = None,
        offload_optimizer: bool = False,
        offload_parameters: bool = False,
        offload_params_device: str = "cpu",
        nvme_path: str = "/local_nvme",
        params_buffer_count: int = 5,
        params_buffer_size: int = 100_000_000,
        max_in_cpu: int = 1_000_000_000,
        offload_optimizer_device: str = "cpu",
        optimizer_buffer_count: int = 4,
        block_size: int = 1048576,
        queue_depth: int = 8,
        single_submit: bool = False,
        overlap_events: bool = True,
        thread_count: int = 1,
        pin_memory: bool = False,
        sub_group_size: int = 1_000_000_000_000,
        contiguous_gradients: bool = True,
        overlap_comm: bool = True,
        allgather_partitions: bool = True,
        reduce_scatter: bool = True,
        allgather_bucket_size: int = 200_000_000,
        reduce_bucket_size: int = 200_000_000,
        zero_allow_untested_optimizer: bool = True,
        logging_batch_size_per_gpu: int | None = None,
        config: str | Path | dict[str, Any] | None = None,
        logging_level: int = logging.WARN,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        loss_scale: float = 0,
        initial_scale_power: int = 16,
        loss_scale_window: int = 1000,
        hysteresis: int = 2,
        min_loss_scale: int = 1,
        partition_activations: bool = False,
        cpu_checkpointing: bool = False,
        contiguous_memory_optimization: bool = False,
        synchronize_checkpoint_boundary: bool = False,
        load_full_weights: bool = False,
        precision: Precision | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = collectives.DEFAULT_TIMEOUT,
        exclude_frozen_parameters: bool = False,
    ) -> None:
        runtime.check_installed()
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            precision=precision,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        ds_config.check_stage(stage)
        if zero_optimization:
            ds_config.check_offload(stage, offload_optimizer, offload_parameters)
        ds_config.check_offload_device("offload_optimizer_device", offload_optimizer_device)
        ds_config.check_offload_device("offload_params_device", offload_params_device)
        if remote_device is not None and remote_device not in ("cpu", "nvme", "cuda"):
            raise ValueError(
                f"DeepSpeedStrategy(remote_device={remote_device!r}) must be 'cpu', 'nvme' or None (the process's "
                "device)."
            )
        if not isinstance(logging_level, int) or isinstance(logging_level, bool):
            raise TypeError(f"DeepSpeedStrategy(logging_level={logging_level!r}) must be a level such as logging.INFO.")
        loaded = ds_config.load_config(config)
        if loaded is not None:
            source = f"config='{config}'" if not isinstance(config, dict) else "config={...}"
            ds_config.validate_config(loaded, source)
            self._config = loaded
        else:
            self._config = ds_config.default_config(
                zero_optimization=zero_optimization,
                stage=stage,
                offload_optimizer=offload_optimizer,
                offload_parameters=offload_parameters,
                offload_params_device=offload_params_device,
                offload_optimizer_device=offload_optimizer_device,
                nvme_path=nvme_path,
                params_buffer_count=params_buffer_count,
                params_buffer_size=params_buffer_size,
                max_in_cpu=max_in_cpu,
                optimizer_buffer_count=optimizer_buffer_count,
                pin_memory=pin_memory,
                block_size=block_size,
                queue_depth=queue_depth,
                single_submit=single_submit,
                overlap_events=overlap_events,
                thread_count=thread_count,
                zero_allow_untested_optimizer=zero_allow_untested_optimizer,
                logging_batch_size_per_gpu=logging_batch_size_per_gpu,
                partition_activations=partition_activations,
                cpu_checkpointing=cpu_checkpointing,
                contiguous_memory_optimization=contiguous_memory_optimization,
                synchronize_checkpoint_boundary=synchronize_checkpoint_boundary,
                sub_group_size=sub_group_size,
                contiguous_gradients=contiguous_gradients,
                overlap_comm=overlap_comm,
                allgather_partitions=allgather_partitions,
                reduce_scatter=reduce_scatter,
                allgather_bucket_size=allgather_bucket_size,
                reduce_bucket_size=reduce_bucket_size,
            )
            if offload_optimizer:
                # The user's torch optimizer steps on the offloaded state; DeepSpeed would otherwise demand its
                # own DeepSpeedCPUAdam, a C++ extension compiled on first use. Passing that optimizer still works.
                self._config["zero_force_ds_cpu_optimizer"] = False
        self.remote_device = remote_device
        self.load_full_weights = load_full_weights
        self.exclude_frozen_parameters = exclude_frozen_parameters
        self.logging_level = logging_level
        self.loss_scale = loss_scale
        self.initial_scale_power = initial_scale_power
        self.loss_scale_window = loss_scale_window
        self.hysteresis = hysteresis
        self.min_loss_scale = min_loss_scale
        self._deepspeed: Any = None
        self._engines: list[Any] = []

    # -- configuration -----------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The DeepSpeed config ``deepspeed.initialize`` receives (complete once ``Fabric(...)`` has resolved)."""
        return self._config

    @property
    def zero_stage(self) -> int:
        return ds_config.zero_stage(self._config)

    @property
    def zero_stage_3(self) -> bool:
        return self.zero_stage == 3

    @property
    def model(self) -> Any:
        """The DeepSpeed engine of the model set up last (``None`` before ``fabric.setup``)."""
        return self._engines[-1] if self._engines else None

    def precision_for(self, name: str) -> Precision | None:
        if name not in PRECISIONS:
            raise ValueError(
                f"DeepSpeed does not run precision={name!r}: choose one of {', '.join(repr(p) for p in PRECISIONS)}."
            )
        return DeepSpeedPrecision(name)

    def connect(self, **resolved: Any) -> None:
        super().connect(**resolved)
        accelerator, precision = self.accelerator, self.precision
        if accelerator is not None:
            runtime.check_device_type(accelerator.device_type)
        if not isinstance(precision, DeepSpeedPrecision):
            raise TypeError(
                f"DeepSpeedStrategy needs a DeepSpeedPrecision, got {precision!r}. Pass the precision by name, e.g. "
                "Fabric(strategy='deepspeed', precision='bf16-mixed')."
            )
        device_type = accelerator.device_type if accelerator is not None else "cpu"
        if precision.precision.startswith("16-") and not runtime.fp16_supported(device_type):
            raise ValueError(
                f"precision={precision.precision!r} cannot run under DeepSpeed on this {device_type.upper()}: "
                "DeepSpeed's float16 engine needs oneDNN float16 support, which this processor lacks. Use "
                "precision='bf16-mixed' (or 'bf16-true'), or run on a GPU."
            )
        ds_config.add_precision(
            self._config,
            precision.precision,
            loss_scale=self.loss_scale,
            initial_scale_power=self.initial_scale_power,
            loss_scale_window=self.loss_scale_window,
            hysteresis=self.hysteresis,
            min_loss_scale=self.min_loss_scale,
        )
        self._config.setdefault("train_micro_batch_size_per_gpu", 1)

    def configure_launcher(self) -> None:
        if self.cluster_environment is not None and not self.cluster_environment.creates_processes_externally:
            from fabric_core.launchers.subprocess_script import SubprocessScriptLauncher

            self._launcher = SubprocessScriptLauncher(self.cluster_environment, self.num_processes, self.num_nodes)

    # -- process group -----------------------------------------------------------------------------

    def setup_environment(self) -> None:
        # First: a stale extension-build lock would make DeepSpeed wait forever further on.
        check_build_locks(shared=self.num_nodes > 1)
        super().setup_environment()
        # DeepSpeed reads this process's place from the environment (zero.Init and the engine need LOCAL_RANK),
        # which torchrun sets but `python script.py` with fabric.launch() does not for the first process.
        runtime.describe_process(self.global_rank, self.local_rank, self.world_size)
        self._deepspeed = runtime.import_deepspeed(self.root_device.type, self.logging_level)
        runtime.init_communication(self._deepspeed, self.process_group_backend, self.timeout)

    def _require_deepspeed(self, method: str) -> Any:
        if self._deepspeed is None:
            raise RuntimeError(
                f"DeepSpeedStrategy.{method} needs the processes of the run: call fabric.launch() first (or start "
                "the script with `fabric run`)."
            )
        return self._deepspeed

    # -- models and optimizers ---------------------------------------------------------------------

    def setup_module_and_optimizers(
        self, module: Module, optimizers: list[Optimizer], scheduler: Any | None = None
    ) -> tuple[Module, list[Optimizer], Any | None]:
        if len(optimizers) > 1:
            raise ValueError(
                f"DeepSpeed drives one optimizer per model, got {len(optimizers)}. Put the parameters in one "
                "optimizer with several parameter groups, e.g. torch.optim.AdamW([{'params': a}, {'params': b, "
                "'lr': 1e-4}])."
            )
        engine, optimizer = self._initialize(module, optimizers[0] if optimizers else None)
        return engine, ([optimizer] if optimizers else []), scheduler

    def setup_module(self, module: Module) -> Module:
        engine, _ = self._initialize(module, None)
        return engine

    def setup_optimizer(self, optimizer: Optimizer) -> Optimizer:
        raise RuntimeError(
            "DeepSpeed sets up a model and its optimizer together: use fabric.setup(model, optimizer) instead of "
            "fabric.setup_optimizers()."
        )

    def _initialize(self, module: Module, optimizer: Optimizer | None) -> tuple[Any, Any]:
        deepspeed = self._require_deepspeed("setup")
        config = copy.deepcopy(self._config)
        if optimizer is None and self.zero_stage in (1, 2):
            # Stages 1 and 2 partition only what an optimizer has (its state, the gradients); without one
            # DeepSpeed refuses them, and the model is whole either way: set it up as stage 0 (inference).
            config["zero_optimization"] = {"stage": 0}
        # The scheduler stays the user's: DeepSpeed would step it inside engine.step() as well.
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=optimizer, config=config, dist_init_required=False
        )
        self._engines.append(engine)
        runtime.configure_activation_checkpointing(deepspeed, self._config)
        return engine, ds_optimizer

    def module_to_device(self, module: Module) -> None:
        if self.zero_stage_3:
            return  # zero.Init and the engine place the partitions themselves
        super().module_to_device(module)

    def module_init_context(self, empty_init: bool | None = None) -> AbstractContextManager:
        if not self.zero_stage_3:
            return super().module_init_context(empty_init)
        if empty_init is False:
            raise ValueError(
                "fabric.init_module(empty_init=False) cannot be honoured under ZeRO stage 3: the parameters are "
                "created already partitioned (deepspeed.zero.Init), so no process holds them whole. Use "
                "init_module(empty_init=True) or leave empty_init out."
            )
        deepspeed = self._require_deepspeed("init_module")
        stack = ExitStack()
        stack.enter_context(
            deepspeed.zero.Init(
                enabled=True,
                remote_device=self.remote_device,
                config_dict_or_path=copy.deepcopy(self._config),
            )
        )
        return stack

    # -- the training step -------------------------------------------------------------------------

    def _engine_for(self, module: Module | None) -> Any:
        if module is None:
            if not self._engines:
                raise RuntimeError("fabric.backward() under DeepSpeed needs a model set up with fabric.setup() first.")
            if len(self._engines) > 1:
                raise ValueError(
                    f"{len(self._engines)} models are set up with DeepSpeed: say which one this loss belongs to, "
                    "fabric.backward(loss, model=model)."
                )
            return self._engines[0]
        for engine in self._engines:
            if module is engine:
                return engine
        raise ValueError(
            f"fabric.backward(loss, model=...) got a {type(module).__name__} that was not set up with DeepSpeed: pass "
            "the model returned by fabric.setup()."
        )

    def backward(self, tensor: Tensor, module: Module | None, *args: Any, **kwargs: Any) -> None:
        engine = self._engine_for(module)
        precision = self.precision
        precision.pre_backward(tensor, engine)
        precision.backward(tensor, engine, *args, **kwargs)
        precision.post_backward(tensor, engine)

    def optimizer_step(self, optimizer: Optimizer, **kwargs: Any) -> Any:
        for engine in self._engines:
            if engine.optimizer is optimizer:
                if kwargs:
                    raise TypeError(
                        f"optimizer.step() under DeepSpeed takes no arguments (got {sorted(kwargs)}): the engine "
                        "steps the optimizer itself."
                    )
                return engine.step()
        return self.precision.optimizer_step(optimizer, **kwargs)

    def no_backward_sync(self, module: Module, enabled: bool) -> AbstractContextManager | None:
        raise RuntimeError(
            "DeepSpeed cannot skip gradient synchronisation for a backward: it accumulates gradients itself. Set "
            "'gradient_accumulation_steps' in the config (e.g. DeepSpeedStrategy(config={..., "
            "'gradient_accumulation_steps': 4})), call fabric.backward(loss) and optimizer.step() on every "
            "micro-batch, and remove fabric.no_backward_sync(): the engine steps once every 4 micro-batches."
        )

    def clip_gradients_norm(
        self,
        module: Module,
        optimizer: Optimizer,
        max_norm: float,
        norm_type: float = 2.0,
        error_if_nonfinite: bool = True,
    ) -> Tensor:
        raise NotImplementedError(_CLIPPING.format(value=max_norm))

    def clip_gradients_value(self, module: Module, optimizer: Optimizer, clip_val: float) -> None:
        raise NotImplementedError(
            "DeepSpeed has no clipping by value; it clips by norm inside its optimizer step. "
            + _CLIPPING.format(value=1.0)
        )

    # -- checkpoints -------------------------------------------------------------------------------

    def save_checkpoint(
        self,
        path: str | Path,
        state: dict[str, Any],
        storage_options: Any | None = None,
        filter: dict[str, Callable[[str, Any], bool]] | None = None,
    ) -> None:
        """Write a DeepSpeed checkpoint directory: the engine's partitions, and the rest of ``state`` beside them."""
        from fabric_deepspeed import checkpoint

        checkpoint.save(self, path, state, storage_options, filter)

    def load_checkpoint(
        self,
        path: str | Path,
        state: Module | Optimizer | dict[str, Any] | None = None,
        strict: bool = True,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Restore ``state`` from a DeepSpeed checkpoint directory, or from a full-weights file.

        With ``load_full_weights=True`` (or a model or optimizer alone as ``state``) ``path`` is one file
        holding a whole state dict, e.g. from ``fabric consolidate`` or another strategy; under stage 3
        each module's partitions are gathered in turn, loaded, and partitioned again.
        """
        from fabric_deepspeed import checkpoint

        path = Path(self.broadcast(str(path)))
        if isinstance(state, (Module, Optimizer)) or self.load_full_weights:
            checkpoint.reject_optimizer_for_full_weights(self, state, path)
            return super().load_checkpoint(path, state, strict, weights_only)
        if not state:
            raise ValueError(
                "fabric.load() under DeepSpeed needs the state to restore, with the model set up by fabric.setup(): "
                "fabric.load(path, {'model': model, 'optimizer': optimizer, ...})."
            )
        return checkpoint.load(self, path, state, strict)

    def load_module_state_dict(self, module: Module, state_dict: dict[str, Any], strict: bool = True) -> None:
        from fabric_deepspeed import checkpoint

        checkpoint.load_full_module_state(self, module, state_dict, strict)

    def get_module_state_dict(self, module: Module) -> dict[str, Any]:
        from fabric_deepspeed import checkpoint

        return checkpoint.full_module_state(self, module)

    # -- the end -----------------------------------------------------------------------------------

    def teardown(self) -> None:
        # Release the engines (their hooks, buffers and communication handles) while the process group still
        # exists: gloo aborts the process at exit when DeepSpeed's objects outlive it.
        engines, self._engines = self._engines, []
        if engines and self._owns_process_group and self._distributed():
            # Every rank done with DeepSpeed's collectives before any rank takes its groups down.
            self.barrier()
        for engine in engines:
            destroy = getattr(engine, "destroy", None)
            if callable(destroy):
                destroy()
        del engines
        gc.collect()
        super().teardown()

    def _destroy_process_group(self) -> None:
        if self._deepspeed is None:
            super()._destroy_process_group()
            return
        # Through DeepSpeed, which also forgets the groups it derived from this one (a later run would reuse them).
        self._deepspeed.comm.destroy_process_group()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(stage={self.zero_stage}, backend={self.process_group_backend!r}, "
            f"num_processes={self.num_processes}, num_nodes={self.num_nodes})"
        )
