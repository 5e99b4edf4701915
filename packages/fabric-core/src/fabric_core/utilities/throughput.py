"""Measuring training throughput: batches, samples, items and FLOPs per second, and model FLOPs utilisation.

:class:`Throughput` turns running totals (elapsed time, batches, samples, ...) into rates over a window
of the latest updates; :class:`ThroughputMonitor` does the same on global rank 0 of a Fabric run and
logs the result with ``fabric.log_dict``. :func:`measure_flops` counts a model's FLOPs and
:func:`get_available_flops` looks up a device's peak FLOPs in :data:`CUDA_FLOPS` and :data:`TPU_FLOPS`.
The metric names, numbers and windows are Lightning Fabric's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from fabric_core.utilities.rank_zero import rank_zero_only, rank_zero_warn

if TYPE_CHECKING:
    from fabric_core.fabric import Fabric

__all__ = [
    "CUDA_FLOPS",
    "TPU_FLOPS",
    "Throughput",
    "ThroughputMonitor",
    "get_available_flops",
    "measure_flops",
]

_THROUGHPUT_METRICS = dict[str, int | float]


class _IncreasingWindow:
    """The latest ``maxlen`` values of a running total, which must grow strictly with every append."""

    def __init__(self, name: str, maxlen: int) -> None:
        self.name = name
        self.maxlen = maxlen
        self.values: deque[float] = deque(maxlen=maxlen)

    def check(self, value: float) -> None:
        if self.values and value <= self.values[-1]:
            raise ValueError(
                f"Throughput.update({self.name}={value}): {self.name} must be a running total that grows with every "
                f"update, but the previous update had {self.name}={self.values[-1]}. Pass the total so far (e.g. "
                "time since the start, batches seen so far), not the amount of this step."
            )

    def append(self, value: float) -> None:
        self.values.append(value)

    @property
    def full(self) -> bool:
        return len(self.values) == self.maxlen

    def span(self) -> float:
        """Last value minus first value in the window."""
        return self.values[-1] - self.values[0]

    def __len__(self) -> int:
        return len(self.values)


class Throughput:
    """Rates of a training loop, computed from running totals over a window of the latest updates.

    Call :meth:`update` with the totals so far (time since start, batches, samples, optionally the
    items such as tokens, and the FLOPs of the step), then :meth:`compute` for a dict of:

    ==========================  ==============================================================
    ``time``                    the latest elapsed time
    ``batches``, ``samples``    the latest totals (per device)
    ``lengths``                 the latest items total, when ``lengths`` are passed
    ``device/batches_per_sec``  batches per second on one device, over the window
    ``device/samples_per_sec``  samples per second on one device
    ``device/items_per_sec``    items per second on one device (padding included)
    ``device/flops_per_sec``    FLOPs per second on one device
    ``device/mfu``              ``device/flops_per_sec / available_flops``
    ``batches_per_sec`` ...     the same rates for all devices (``world_size`` times the per-device
                                rate), only when ``world_size > 1``
    ==========================  ==============================================================

    The rates appear once ``window_size`` updates were made; ``/`` is ``separator``. All devices are
    assumed to be alike: one ``available_flops`` for each, rates multiplied by the world size.

    Args:
        available_flops: peak FLOPs per second of one device (see :func:`get_available_flops`); without
            it there is no ``mfu``.
        world_size: the number of devices; global rates are added when it is above 1.
        window_size: the number of latest updates the rates are computed over (at least 2).
        separator: what joins ``device`` and the metric name.

    Example::

        throughput = Throughput(window_size=10)
        start = time.perf_counter()
        for i, batch in enumerate(loader, 1):
            train_step(batch)
            torch.cuda.synchronize()  # on GPUs, or the time measures the launch, not the work
            throughput.update(time=time.perf_counter() - start, batches=i, samples=i * batch_size)
            if i % 10 == 0:
                print(throughput.compute())
    """

    def __init__(
        self, available_flops: float | None = None, world_size: int = 1, window_size: int = 100, separator: str = "/"
    ) -> None:
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"Throughput(world_size={world_size!r}): expected an int of at least 1, the device count.")
        # a rate needs a first and a last value: a window of one update has no span
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 2:
            raise ValueError(
                f"Throughput(window_size={window_size!r}): expected an int of at least 2 (rates compare the first "
                "and last update of the window)."
            )
        self.available_flops = available_flops
        self.world_size = world_size
        self.separator = separator
        self._time = _IncreasingWindow("time", window_size)
        self._batches = _IncreasingWindow("batches", window_size)
        self._samples = _IncreasingWindow("samples", window_size)
        self._lengths = _IncreasingWindow("lengths", window_size)
        self._flops: deque[float] = deque(maxlen=window_size)  # per-step amounts (all devices), not totals

    def update(
        self, *, time: float, batches: int, samples: int, lengths: int | None = None, flops: float | None = None
    ) -> None:
        """Record the totals after a step.

        Args:
            time: seconds since the start; it must grow with every update.
            batches: batches seen so far on this device; it must grow.
            samples: samples seen so far on this device (at least ``batches``); it must grow.
            lengths: items (e.g. tokens) seen so far on this device, at least ``samples``. Pass it on
                every update or never.
            flops: FLOPs this device spent since the previous update, e.g. :func:`measure_flops` of one
                batch times the batches of the step.
        """
        if samples < batches:
            raise ValueError(
                f"Throughput.update(batches={batches}, samples={samples}): samples must be at least batches (every "
                "batch holds at least one sample). Did you swap them?"
            )
        if lengths is not None and lengths < samples:
            raise ValueError(
                f"Throughput.update(samples={samples}, lengths={lengths}): lengths (items such as tokens seen so "
                "far) must be at least samples."
            )
        checks = [(self._time, time), (self._batches, batches), (self._samples, samples)]
        if lengths is not None:
            checks.append((self._lengths, lengths))
        for window, value in checks:
            window.check(value)
        for window, value in checks:
            window.append(value)
        if lengths is not None and len(self._lengths) != len(self._samples):
            raise RuntimeError(
                f"Throughput.update: lengths were passed in {len(self._lengths)} of the last {len(self._samples)} "
                "updates. Pass lengths on every update (or on none)."
            )
        if flops is not None:
            self._flops.append(flops * self.world_size)

    def compute(self) -> _THROUGHPUT_METRICS:
        """The metrics of the latest update (see the class description)."""
        if not len(self._time):
            raise RuntimeError("Throughput.compute() needs at least one update() first.")
        device = f"device{self.separator}"
        metrics: _THROUGHPUT_METRICS = {
            "time": self._time.values[-1],
            "batches": self._batches.values[-1],
            "samples": self._samples.values[-1],
        }
        if len(self._lengths):
            metrics["lengths"] = self._lengths.values[-1]
        several = self.world_size > 1
        if self._time.full:
            elapsed = self._time.span()  # > 0: the windows only grow
            batches_per_sec = self._batches.span() / elapsed
            samples_per_sec = self._samples.span() / elapsed
            metrics[f"{device}batches_per_sec"] = batches_per_sec
            metrics[f"{device}samples_per_sec"] = samples_per_sec
            if several:
                metrics["batches_per_sec"] = batches_per_sec * self.world_size
                metrics["samples_per_sec"] = samples_per_sec * self.world_size
            if self._lengths.full:
                items_per_sec = self._lengths.span() / elapsed
                metrics[f"{device}items_per_sec"] = items_per_sec
                if several:
                    metrics["items_per_sec"] = items_per_sec * self.world_size
        if len(self._flops) == self._flops.maxlen:
            # each entry is the work done since the previous update: the first one predates the window's time span
            flops_per_sec = (sum(self._flops) - self._flops[0]) / self._time.span()
            device_flops_per_sec = flops_per_sec / self.world_size
            if several:
                metrics["flops_per_sec"] = flops_per_sec
            metrics[f"{device}flops_per_sec"] = device_flops_per_sec
            if self.available_flops:
                metrics[f"{device}mfu"] = device_flops_per_sec / self.available_flops
        return metrics

    def reset(self) -> None:
        """Forget every update."""
        for window in (self._time, self._batches, self._samples, self._lengths):
            window.values.clear()
        self._flops.clear()


class ThroughputMonitor(Throughput):
    """:class:`Throughput` for a Fabric run: world size and peak FLOPs from ``fabric``, logging on rank 0.

    ``available_flops`` is looked up for ``fabric.device`` and the dtype the precision computes in.
    :meth:`update`, :meth:`compute`, :meth:`compute_and_log` and :meth:`reset` run on global rank 0
    only (``compute`` returns ``{}`` elsewhere); call them on every rank all the same.

    Args:
        fabric: a launched :class:`~fabric_core.Fabric`.
        **kwargs: ``window_size`` and ``separator``, as for :class:`Throughput`.

    Example::

        fabric = Fabric(loggers=CSVLogger("logs"))
        fabric.launch()
        monitor = ThroughputMonitor(fabric, window_size=20)
        start = time.perf_counter()
        for i, batch in enumerate(loader, 1):
            train_step(batch)
            monitor.update(time=time.perf_counter() - start, batches=i, samples=i * batch_size)
            if i % 10 == 0:
                monitor.compute_and_log(step=i)
    """

    def __init__(self, fabric: Fabric, **kwargs: Any) -> None:
        for name in ("available_flops", "world_size"):
            if name in kwargs:
                raise TypeError(
                    f"ThroughputMonitor(fabric, {name}=...): {name} comes from the Fabric object; pass only "
                    "window_size and separator, or use Throughput directly."
                )
        _check_launched(fabric)
        available_flops = get_available_flops(fabric.device, _compute_dtype(fabric.strategy.precision))
        super().__init__(available_flops=available_flops, world_size=fabric.world_size, **kwargs)
        self._fabric = fabric
        self.step = -1
        # bound per instance so that the rank is read when they are called, after any launch
        self.update = rank_zero_only(self.update)  # type: ignore[method-assign]
        self.compute = rank_zero_only(self.compute, default={})  # type: ignore[method-assign]
        self.compute_and_log = rank_zero_only(self.compute_and_log, default={})  # type: ignore[method-assign]
        self.reset = rank_zero_only(self.reset)  # type: ignore[method-assign]

    def compute_and_log(self, step: int | None = None, **kwargs: Any) -> _THROUGHPUT_METRICS:
        """Compute the metrics and log them with ``fabric.log_dict`` at ``step`` (default: one more than the last).

        Returns the metrics (``{}`` on ranks other than 0).
        """
        self.step = self.step + 1 if step is None else step
        metrics = self.compute(**kwargs)
        self._fabric.log_dict(metrics=metrics, step=self.step)
        return metrics


def _check_launched(fabric: Any) -> None:
    # Before launch, a multi-process strategy's world size is not this process's yet.
    strategy = fabric.strategy
    if getattr(fabric, "_launched", True) or not getattr(strategy, "needs_launch", False):
        return
    raise RuntimeError(
        f"ThroughputMonitor(fabric) needs the processes of the run first: {type(strategy).__name__} runs several "
        "processes, and the world size is only known after fabric.launch(). Create the monitor after launching."
    )


_DTYPE_BY_PRECISION_PREFIX = (
    ("bf16", torch.bfloat16),
    ("16", torch.float16),
    ("64", torch.float64),
    ("transformer-engine", torch.int8),  # FP8 matmuls: Lightning counts them at the int8 rate
)


def _compute_dtype(precision: Any) -> torch.dtype:
    """The dtype the matrix multiplications of ``precision`` run in, which the peak FLOPs depend on."""
    for attribute in ("compute_dtype", "dtype"):  # fabric-fsdp's FSDPPrecision, bitsandbytes-style plugins
        dtype = getattr(precision, attribute, None)
        if isinstance(dtype, torch.dtype):
            return dtype
    name = getattr(precision, "precision", None)
    if isinstance(name, str):
        for prefix, dtype in _DTYPE_BY_PRECISION_PREFIX:
            if name.startswith(prefix):
                return dtype
    return torch.float32


def measure_flops(
    model: torch.nn.Module,
    forward_fn: Callable[[], torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """The FLOPs of one call of ``forward_fn`` (and, with ``loss_fn``, of the loss and its backward).

    Counted by ``torch.utils.flop_counter.FlopCounterMode``, so the model can live on the ``meta``
    device: nothing is computed and no memory is used.

    Args:
        model: the model ``forward_fn`` runs.
        forward_fn: runs the forward and returns its output.
        loss_fn: turns that output into a loss; its FLOPs and the backward's are counted too.

    Example::

        with torch.device("meta"):
            model = MyModel()
            x = torch.randn(8, 128)
        forward = measure_flops(model, lambda: model(x))
        training = measure_flops(model, lambda: model(x), lambda y: y.sum())
    """
    if not callable(forward_fn):
        raise TypeError(f"measure_flops(forward_fn={forward_fn!r}): expected a function that runs the forward.")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"measure_flops(loss_fn={loss_fn!r}): expected a function of the forward's output, or None.")
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        output = forward_fn()
        if loss_fn is not None:
            loss_fn(output).backward()
    return counter.get_total_flops()


_TF32 = "tfloat32"

#: Peak dense FLOPs per second of NVIDIA GPUs, by chip and dtype (``"tfloat32"`` and ``"int4"`` as strings).
#: Lightning Fabric's numbers, from NVIDIA's datasheets. Add an entry for a chip that is missing.
CUDA_FLOPS: dict[str, dict[torch.dtype | str, float]] = {
    # Hopper
    "h200 sxm1": {
        torch.float64: 3.4e13,
        torch.float32: 6.7e13,
        _TF32: 9.9e14,
        torch.bfloat16: 2.0e15,
        torch.float16: 2.0e15,
        torch.int8: 4.0e15,
    },
    "h200 nvl1": {
        torch.float64: 3.0e13,
        torch.float32: 6.0e13,
        _TF32: 8.4e14,
        torch.bfloat16: 1.7e15,
        torch.float16: 1.7e15,
        torch.int8: 3.3e15,
    },
    "h100 nvl": {
        torch.float64: 67e12,
        torch.float32: 133.8e12,
        _TF32: 989.4e12,
        torch.bfloat16: 1978.8e12,
        torch.float16: 1978.8e12,
        torch.int8: 3957.8e12,
    },
    "h100 sxm": {
        torch.float64: 33.5e12,
        torch.float32: 66.9e12,
        _TF32: 494.7e12,
        torch.bfloat16: 989.4e12,
        torch.float16: 989.4e12,
        torch.int8: 1978.9e12,
    },
    "h100 pcie": {
        torch.float64: 25.6e12,
        torch.float32: 51.2e12,
        _TF32: 378e12,
        torch.bfloat16: 756e12,
        torch.float16: 756e12,
        torch.int8: 1513e12,
    },
    # Ada
    "rtx 4090": {
        torch.float32: 82.6e12,
        _TF32: 82.6e12,
        torch.bfloat16: 82.6e12,
        torch.float16: 82.6e12,
        torch.int8: 660.6e12,
        "int4": 1321.2e12,
    },
    "rtx 4080": {
        torch.float32: 48.7e12,
        _TF32: 48.7e12,
        torch.bfloat16: 48.7e12,
        torch.float16: 48.7e12,
        torch.int8: 389.9e12,
        "int4": 779.8e12,
    },
    "rtx 4080 super": {
        torch.float32: 52.2e12,
        _TF32: 52.2e12,
        torch.bfloat16: 52.2e12,
        torch.float16: 52.2e12,
        torch.int8: 417.6e12,
        "int4": 835.2e12,
    },
    "l4": {
        torch.float32: 30.3e12,
        _TF32: 60e12,
        torch.bfloat16: 121e12,
        torch.float16: 121e12,
        torch.int8: 242e12,
        "int4": 484e12,
    },
    "l40": {
        torch.float32: 90.5e12,
        _TF32: 90.5e12,
        torch.bfloat16: 181e12,
        torch.float16: 181e12,
        torch.int8: 362e12,
        "int4": 724e12,
    },
    # Ampere (A100 SXM and PCIe have the same peaks)
    "a100": {
        torch.float64: 9.7e12,
        torch.float32: 19.5e12,
        _TF32: 156e12,
        torch.bfloat16: 312e12,
        torch.float16: 312e12,
        torch.int8: 624e12,
    },
    "a6000": {
        torch.float32: 38.7e12,
        _TF32: 77.4e12,
        torch.bfloat16: 38.7e12,
        torch.float16: 38.7e12,
        torch.int8: 309.7e12,
        "int4": 619.3e12,
    },
    "a40": {
        torch.float32: 37.4e12,
        _TF32: 74.8e12,
        torch.bfloat16: 37.4e12,
        torch.float16: 37.4e12,
        torch.int8: 299.3e12,
        "int4": 598.7e12,
    },
    "a10g": {
        torch.float32: 31.2e12,
        _TF32: 62.5e12,
        torch.bfloat16: 125e12,
        torch.float16: 125e12,
        torch.int8: 250e12,
        "int4": 500e12,
    },
    "rtx 3090 ti": {
        torch.float32: 40e12,
        _TF32: 40e12,
        torch.bfloat16: 40e12,
        torch.float16: 40e12,
        torch.int8: 320e12,
        "int4": 640e12,
    },
    "rtx 3090": {
        torch.float32: 35.6e12,
        _TF32: 35.6e12,
        torch.bfloat16: 35.6e12,
        torch.float16: 35.6e12,
        torch.int8: 284e12,
        "int4": 568e12,
    },
    "rtx 3080 ti": {
        torch.float32: 34.1e12,
        _TF32: 34.1e12,
        torch.bfloat16: 34.1e12,
        torch.float16: 34.1e12,
        torch.int8: 272.8e12,
        "int4": 546.6e12,
    },
    "rtx 3080": {
        torch.float32: 29.8e12,
        _TF32: 29.8e12,
        torch.bfloat16: 29.8e12,
        torch.float16: 29.8e12,
        torch.int8: 238e12,
        "int4": 476e12,
    },
    "rtx 3070": {
        torch.float32: 20.3e12,
        _TF32: 20.3e12,
        torch.bfloat16: 20.3e12,
        torch.float16: 20.3e12,
        torch.int8: 162.6e12,
        "int4": 325.2e12,
    },
    # Turing (T4 SXM and PCIe have the same peaks)
    "t4": {
        torch.float32: 8.1e12,
        torch.float16: 65e12,
        torch.int8: 130e12,
        "int4": 260e12,
    },
    "quadro rtx 5000": {
        torch.float32: 11.2e12,
        torch.float16: 89.2e12,
    },
    "rtx 2080 super": {
        torch.float32: 11.2e12,
        torch.float16: 22.3e12,
        torch.int8: 178.4e12,
        "int4": 356.8e12,
    },
    "rtx 2080 ti": {
        torch.float32: 14.2e12,
        torch.float16: 28.5e12,
        torch.int8: 227.7e12,
        "int4": 455.4e12,
    },
    "rtx 2080": {
        torch.float32: 10.6e12,
        torch.float16: 21.2e12,
        torch.int8: 169.6e12,
        "int4": 339.1e12,
    },
    "rtx 2070 super": {
        torch.float32: 9.1e12,
        torch.float16: 18.1e12,
        torch.int8: 145e12,
        "int4": 290e12,
    },
    "titan rtx": {
        torch.float32: 16.3e12,
        torch.float16: 32.6e12,
        torch.int8: 261e12,
        "int4": 522e12,
    },
    # Volta
    "v100 sxm": {
        torch.float64: 7.8e12,
        torch.float32: 15.7e12,
        torch.float16: 125e12,
    },
    "v100 pcie": {
        torch.float64: 7e12,
        torch.float32: 14e12,
        torch.float16: 112e12,
    },
    "v100s pcie": {
        torch.float64: 8.2e12,
        torch.float32: 16.4e12,
        torch.float16: 130e12,
    },
}

#: Peak FLOPs per second of a TPU chip by generation; the same for every dtype, as TPUs multiply in bfloat16.
TPU_FLOPS: dict[str, float] = {
    "v2": 45e12,
    "v3": 123e12,
    "v4": 275e12,
    "v5litepod": 197e12,
}

# Lightning's (private) names for the same tables, for code that extends them.
_CUDA_FLOPS = CUDA_FLOPS
_TPU_FLOPS = TPU_FLOPS

# Substring of the lower-cased device name -> table key, tried in order after the families with variants.
_CHIP_BY_SUBSTRING = (
    ("a6000", "a6000"),
    ("a100", "a100"),
    ("a40", "a40"),
    ("a10g", "a10g"),
    ("t4", "t4"),
    ("quadro rtx 5000", "quadro rtx 5000"),
    ("titan rtx", "titan rtx"),
    ("v100-sxm", "v100 sxm"),
    ("v100-pcie", "v100 pcie"),
    ("v100s-pcie", "v100s pcie"),
)


def _cuda_chip(name: str) -> str | None:
    """The :data:`CUDA_FLOPS` key for a ``torch.cuda.get_device_name`` result (``None``: not a known family).

    A known family whose variant is not recognised gives the lower-cased name itself, which is then
    missing from the table.
    """
    chip = name.lower()
    if "h200" in chip:
        variant = next((v for v in ("sxm1", "nvl1") if v in chip), None)
        return f"h200 {variant}" if variant else chip
    if "h100" in chip:
        if "hbm3" in chip:
            return "h100 sxm"
        if "nvl" in chip:
            return "h100 nvl"
        if "pcie" in chip or "hbm2e" in chip:
            return "h100 pcie"
        return chip
    if "l4" in chip:
        return "l40" if "tesla" in chip else "l4"
    if "geforce rtx" in chip:  # "NVIDIA GeForce RTX 4080 SUPER" -> "rtx 4080 super"
        words = chip.split("geforce rtx", 1)[1].split()
        if not words:
            return None
        suffix = " super" if "super" in chip else " ti" if "ti" in chip else ""
        return f"rtx {words[0]}{suffix}"
    return next((key for part, key in _CHIP_BY_SUBSTRING if part in chip), None)


def _tensor_float32_in_use(device: torch.device) -> bool:
    # Ampere and later run float32 matmuls in TF32 unless the precision is "highest"
    return torch.cuda.get_device_capability(device)[0] >= 8 and torch.get_float32_matmul_precision() != "highest"


def _cuda_available_flops(device: torch.device, dtype: torch.dtype | str) -> int | None:
    name = torch.cuda.get_device_name(device)
    chip = _cuda_chip(name)
    if chip is None:
        rank_zero_warn(f"FLOPs not found for {name!r}: add its peaks to fabric_core.utilities.throughput.CUDA_FLOPS.")
        return None
    peaks = CUDA_FLOPS.get(chip)
    if peaks is None:
        rank_zero_warn(f"FLOPs not found for {name!r}, chip is {chip!r}: add it to CUDA_FLOPS.")
        return None
    if dtype is torch.float32 and _tensor_float32_in_use(device):
        dtype = _TF32
    if dtype not in peaks:
        rank_zero_warn(f"{name!r} does not support {dtype} (no peak FLOPs known for it).")
        return None
    return int(peaks[dtype])


def _tpu_environment() -> dict[str, Any]:
    try:
        from torch_xla._internal import tpu
    except ImportError:  # torch_xla before 2.1
        from torch_xla.experimental import tpu
    return tpu.get_tpu_env()


def _tpu_available_flops(dtype: torch.dtype | str) -> int | None:
    environment = _tpu_environment()
    # not every generation sets TYPE (e.g. "V4"); ACCELERATOR_TYPE is like "v4-8"
    name = environment.get("TYPE") or environment["ACCELERATOR_TYPE"].split("-")[0]
    peak = TPU_FLOPS.get(name.lower())
    if peak is None:
        rank_zero_warn(f"FLOPs not found for TPU {name!r} with {dtype}: add it to TPU_FLOPS.")
        return None
    return int(peak)


def get_available_flops(device: torch.device, dtype: torch.dtype | str) -> int | None:
    """The peak FLOPs per second of ``device`` computing in ``dtype``, or ``None`` when unknown.

    An optimistic upper bound, reached only by large matrix multiplications. CUDA GPUs are looked up
    by name in :data:`CUDA_FLOPS` (float32 counts as TF32 on Ampere and later unless
    ``torch.get_float32_matmul_precision()`` is ``"highest"``), TPUs in :data:`TPU_FLOPS`; an unknown
    chip or dtype warns and gives ``None``. Other devices (CPU, MPS) give ``None`` without a warning.

    Example::

        get_available_flops(torch.device("cuda"), torch.bfloat16)  # 312000000000000 on an A100
    """
    if not isinstance(device, torch.device):
        raise TypeError(f"get_available_flops(device={device!r}): expected a torch.device, e.g. fabric.device.")
    if device.type == "cuda":
        return _cuda_available_flops(device, dtype)
    if device.type == "xla":
        return _tpu_available_flops(dtype)
    return None
