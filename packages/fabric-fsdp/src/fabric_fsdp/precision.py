"""``FSDPPrecision``: the precisions of sharded training, through FSDP2's mixed-precision policy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
from torch import Tensor
from torch.nn import Module, Parameter
from torch.optim import Optimizer

from fabric_core.precision.precision import Precision

_DTYPES = {
    "32-true": torch.float32,
    "16-true": torch.float16,
    "bf16-true": torch.bfloat16,
    "16-mixed": torch.float16,
    "bf16-mixed": torch.bfloat16,
}
PRECISIONS = tuple(_DTYPES)


class FSDPPrecision(Precision):
    """``"32-true"``, ``"bf16-mixed"``, ``"16-mixed"``, ``"bf16-true"`` or ``"16-true"`` for sharded training.

    In the ``-mixed`` modes the sharded parameters, which the optimizer updates (the master weights),
    stay float32: FSDP all-gathers them cast to bfloat16 or float16 for forward and backward, and
    reduces the gradients in float32 (:attr:`mixed_precision_policy`). The forward also runs under
    ``torch.autocast``, so numerically sensitive operations (softmax, losses) stay float32, as with
    fabric-core's ``MixedPrecision``. ``"16-mixed"`` scales the loss with a ``ShardedGradScaler``,
    whose skip decision is the same on every rank. In the ``-true`` modes the parameters themselves
    are converted, and there is no float32 copy.

    ``Fabric(strategy="fsdp", precision="bf16-mixed")`` creates this plugin for you; construct it
    yourself only to pass a scaler::

        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        precision = FSDPPrecision("16-mixed", scaler=ShardedGradScaler("cuda", init_scale=2.0**12))
        fabric = Fabric(strategy="fsdp", plugins=precision)

    Args:
        precision: one of the five names above.
        scaler: a ``ShardedGradScaler`` (``"16-mixed"`` only); one is created when omitted.
        device: the device type autocast and the scaler run on. The strategy fills it in from the
            accelerator when it is left ``None``.
    """

    def __init__(
        self,
        precision: Literal["32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"] = "32-true",
        scaler: torch.amp.GradScaler | None = None,
        device: str | None = None,
    ) -> None:
        if precision not in _DTYPES:
            raise ValueError(
                f"FSDPPrecision(precision={precision!r}) is not supported: expected one of "
                f"{', '.join(repr(p) for p in PRECISIONS)}."
            )
        if scaler is not None and precision != "16-mixed":
            raise ValueError(
                f"FSDPPrecision({precision!r}) takes no gradient scaler: only '16-mixed' scales the loss. Remove "
                "the `scaler` argument."
            )
        if device is not None and not isinstance(device, str):
            raise TypeError(f"FSDPPrecision(device={device!r}) must be a device type string such as 'cuda' or 'cpu'.")
        self.precision = precision
        self.device = device
        self._scaler = scaler
        self._dtype = _DTYPES[precision]
        self._core: Precision | None = None

    @property
    def is_mixed(self) -> bool:
        """Whether the parameters stay float32 while forward and backward compute in a lower dtype."""
        return self.precision.endswith("-mixed")

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of forward and backward computation."""
        return self._dtype

    @property
    def mixed_precision_policy(self) -> Any:
        """The ``MixedPrecisionPolicy`` FSDP2 applies, or ``None`` where parameters keep their own dtype."""
        if not self.is_mixed:
            return None
        from torch.distributed.fsdp import MixedPrecisionPolicy

        return MixedPrecisionPolicy(param_dtype=self._dtype, reduce_dtype=torch.float32)

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        """The loss scaler of ``"16-mixed"`` (``None`` otherwise)."""
        if self.precision != "16-mixed":
            return None
        if self._scaler is None:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            self._scaler = ShardedGradScaler(device=self._device_type)
        return self._scaler

    @property
    def _device_type(self) -> str:
        if self.device is not None:
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def _base(self) -> Precision:
        """fabric-core's plugin of the same name, which this one adds the FSDP2 policy to."""
        if self._core is None:
            if self.is_mixed:
                from fabric_core.precision.amp import MixedPrecision

                self._core = MixedPrecision(self.precision, device=self._device_type, scaler=self.scaler)
            elif self.precision == "32-true":
                self._core = Precision()
            else:
                from fabric_core.precision.half import HalfPrecision

                self._core = HalfPrecision(self.precision)
        return self._core

    # -- the precision interface, as fabric-core's plugin of the same name -------------------------

    @property
    def skips_nonfinite_steps(self) -> bool:
        return self.precision == "16-mixed"

    def convert_module(self, module: Module) -> Module:
        return self._base.convert_module(module)

    def convert_input(self, data: Any) -> Any:
        return self._base.convert_input(data)

    def convert_output(self, data: Any) -> Any:
        return self._base.convert_output(data)

    def forward_context(self) -> AbstractContextManager:
        return self._base.forward_context()

    def module_init_context(self) -> AbstractContextManager:
        return self._base.module_init_context()

    def tensor_init_context(self) -> AbstractContextManager:
        return self._base.tensor_init_context()

    def pre_backward(self, tensor: Tensor, module: Module | None) -> Tensor:
        return self._base.pre_backward(tensor, module)

    def backward(self, tensor: Tensor, model: Module | None, *args: Any, **kwargs: Any) -> None:
        self._base.backward(tensor, model, *args, **kwargs)

    def post_backward(self, tensor: Tensor, module: Module | None) -> Tensor:
        return self._base.post_backward(tensor, module)

    def optimizer_step(self, optimizer: Optimizer, **kwargs: Any) -> Any:
        return self._base.optimizer_step(optimizer, **kwargs)

    def main_params(self, optimizer: Optimizer) -> Iterator[Parameter]:
        return self._base.main_params(optimizer)

    def unscale_gradients(self, optimizer: Optimizer) -> None:
        self._base.unscale_gradients(optimizer)

    def state_dict(self) -> dict[str, Any]:
        return self._base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._base.load_state_dict(state_dict)

    def teardown(self) -> None:
        self._base.teardown()
