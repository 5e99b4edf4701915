"""Stopping a run when the loss spikes, and remembering which batches to skip when it resumes."""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from fabric_core.fabric import Fabric

__all__ = ["SpikeDetection", "TrainingSpikeException"]

_SKIP_FILE = "skip_batches.json"


class TrainingSpikeException(RuntimeError):
    """Raised on every rank by :class:`SpikeDetection` when a rank saw a loss spike; ``batch_idx`` is the batch.

    Example::

        try:
            spike_detection.on_train_batch_end(fabric, loss, batch, batch_idx)
        except TrainingSpikeException as spike:
            fabric.print(f"stopping at batch {spike.batch_idx}")
    """

    def __init__(self, batch_idx: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(f"Training spike detected in batch {batch_idx}", *args, **kwargs)
        self.batch_idx = batch_idx


class _RunningMean:
    """The mean of the elements given to the latest ``window`` updates (NaN elements left out), on their device."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.sums: deque[Tensor] = deque(maxlen=window)
        self.counts: deque[int] = deque(maxlen=window)

    def update(self, value: Tensor) -> None:
        value = torch.as_tensor(value).detach().to(torch.get_default_dtype()).flatten()
        value = value[~torch.isnan(value)]
        self.sums.append(value.sum())
        self.counts.append(value.numel())

    def compute(self) -> Tensor:
        if not self.sums:
            return torch.tensor(float("nan"))
        return torch.stack(list(self.sums)).sum() / sum(self.counts)  # 0 / 0 = NaN when all were NaN

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window, "sums": [s.item() for s in self.sums], "counts": list(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window = state["window"]
        self.sums = deque((torch.tensor(s) for s in state["sums"]), maxlen=self.window)
        self.counts = deque(state["counts"], maxlen=self.window)


class SpikeDetection:
    """Stop training with :class:`TrainingSpikeException` when the loss jumps away from its running mean.

    Call :meth:`on_train_batch_end` after each step on every rank (or register the object as a Fabric
    callback and ``fabric.call("on_train_batch_end", fabric=fabric, loss=loss, batch=batch,
    batch_idx=i)``). Each rank compares its loss with the mean of its own last ``window`` losses; when
    any rank sees a spike, every rank raises, and rank 0 writes the indices of that batch and the one
    before it (which may have pushed the weights there) to a JSON file, adding to those of earlier
    spikes, so that a resumed run can skip them.

    A loss is a spike when it is not an improvement on the previous loss (lower for ``mode="min"``,
    higher for ``"max"``) and differs from the running mean by at least ``atol`` and by at least
    ``rtol`` times the mean (a tolerance set to ``None`` is not checked). With ``finite_only`` a NaN
    or infinite loss is a spike too.

    Args:
        mode: ``"min"`` when the loss should go down, ``"max"`` when it should go up.
        window: the number of latest losses the running mean covers.
        warmup: batches at the start (by ``batch_idx``) that are never spikes.
        atol: the smallest absolute difference from the running mean that is a spike.
        rtol: the smallest difference, relative to the running mean, that is a spike.
        exclude_batches_path: the JSON file, or a directory for ``skip_batches.json`` in it; default the
            working directory.
        finite_only: treat non-finite losses as spikes. With ``False``, they are no spikes but leave the
            running mean alone (on every rank, whenever one rank's loss is not finite).

    Example::

        detector = SpikeDetection(window=20, rtol=1.5, exclude_batches_path="checkpoints")
        for batch_idx, batch in enumerate(loader):
            loss = train_step(batch)
            detector.on_train_batch_end(fabric, loss, batch, batch_idx)
    """

    def __init__(
        self,
        mode: Literal["min", "max"] = "min",
        window: int = 10,
        warmup: int = 1,
        atol: float | None = None,
        rtol: float | None = 2.0,
        exclude_batches_path: str | Path | None = None,
        finite_only: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"SpikeDetection(mode={mode!r}): expected 'min' (the loss goes down) or 'max'.")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"SpikeDetection(window={window!r}): expected an int of at least 1.")
        self.mode = mode
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.exclude_batches_path = exclude_batches_path
        self.finite_only = finite_only
        self.last_val: Tensor | float = 0.0
        self.bad_batches: list[int] = []
        self.running_mean = _RunningMean(window)

    @torch.no_grad()
    def on_train_batch_end(self, fabric: Fabric, loss: Tensor, batch: Any, batch_idx: int) -> None:
        """Check ``loss`` of batch ``batch_idx``; raise :class:`TrainingSpikeException` on every rank on a spike.

        A collective: call it on every rank, for every batch.
        """
        loss = torch.as_tensor(loss)
        self.exclude_batches_path = self._skip_file()
        is_spike = batch_idx >= self.warmup and self._is_spike(loss)
        fabric.strategy.barrier()
        # each rank judges its own loss, but a spike on one rank stops them all
        if fabric.strategy.reduce_boolean_decision(is_spike, all=False):
            self._handle_spike(fabric, batch_idx)
        if self.finite_only or fabric.strategy.reduce_boolean_decision(bool(torch.isfinite(loss).all()), all=True):
            self.running_mean.update(loss)
            self.last_val = loss

    def _skip_file(self) -> str:
        path = os.getcwd() if self.exclude_batches_path is None else os.fspath(self.exclude_batches_path)
        return path if path.endswith(".json") else os.path.join(path, _SKIP_FILE)

    def _is_spike(self, loss: Tensor) -> bool:
        if self.finite_only and not bool(torch.isfinite(loss).all()):
            return True
        if self._is_better(loss - self.last_val):
            return False
        mean = self.running_mean.compute().to(loss.device)
        return self._check_atol(loss, mean) and self._check_rtol(loss, mean)

    def _is_better(self, diff: Tensor | float) -> bool:
        diff = torch.as_tensor(diff)
        return bool((diff <= 0).all()) if self.mode == "min" else bool((diff >= 0).all())

    def _check_atol(self, value: Tensor | float, mean: Tensor | float) -> bool:
        return self.atol is None or bool(abs(value - mean) >= abs(self.atol))

    def _check_rtol(self, value: Tensor | float, mean: Tensor | float) -> bool:
        return self.rtol is None or bool(abs(value - mean) >= abs(self.rtol * mean))

    def _handle_spike(self, fabric: Fabric, batch_idx: int) -> None:
        # the previous batch may have pushed the weights to where this one's loss blew up: skip both
        self.bad_batches.extend([batch_idx - 1, batch_idx])
        if fabric.global_rank == 0:
            path = Path(self._skip_file())
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.bad_batches, indent=4))
        raise TrainingSpikeException(batch_idx=batch_idx)

    def state_dict(self) -> dict[str, Any]:
        """The detector's settings, history and running mean, for ``fabric.save``."""
        last = self.last_val.item() if isinstance(self.last_val, Tensor) else self.last_val
        return {
            "last_val": last,
            "mode": self.mode,
            "warmup": self.warmup,
            "atol": self.atol,
            "rtol": self.rtol,
            "bad_batches": list(self.bad_batches),
            "bad_batches_path": self.exclude_batches_path,
            "finite_only": self.finite_only,
            "running": self.running_mean.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the dict is not modified)."""
        self.last_val = state_dict["last_val"]
        self.mode = state_dict["mode"]
        self.warmup = state_dict["warmup"]
        self.atol = state_dict["atol"]
        self.rtol = state_dict["rtol"]
        self.bad_batches = list(state_dict["bad_batches"])
        self.exclude_batches_path = state_dict["bad_batches_path"]
        self.finite_only = state_dict.get("finite_only", self.finite_only)
        self.running_mean.load_state_dict(state_dict["running"])
