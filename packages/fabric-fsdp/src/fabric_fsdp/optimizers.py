"""Pointing optimizers created before sharding at the sharded parameters that replaced their parameters.

``fully_shard`` and ``parallelize_module`` replace each parameter of the model by a new (DTensor)
parameter of the same name. An optimizer built from ``model.parameters()`` before that still holds
the old ones, which no longer train anything. :class:`ParameterReplacements` remembers, by name,
which new parameter replaced which old one, and :meth:`~ParameterReplacements.repoint` swaps them in
the optimizer's parameter groups, keeping every hyperparameter.
"""

from __future__ import annotations

import weakref
from typing import Any

from torch import Tensor
from torch.nn import Module
from torch.optim import Optimizer


def parameter_names(module: Module) -> dict[int, tuple[weakref.ref, str]]:
    """``id(parameter) -> (weak reference, name)`` for every parameter of ``module`` (shared ones once)."""
    return {id(p): (weakref.ref(p), name) for name, p in module.named_parameters()}


def check_no_state(optimizer: Optimizer, method: str) -> None:
    """Refuse an optimizer whose state belongs to parameters that sharding is about to replace."""
    if optimizer.state:
        raise ValueError(
            f"{method} got a {type(optimizer).__name__} that already has state for {len(optimizer.state)} "
            "parameter(s) (it has stepped, or its state was loaded). Sharding replaces the model's parameters, "
            "so that state would belong to parameters that no longer train. Create the optimizer fresh, set it "
            "up, and restore its state afterwards with fabric.load(path, {'model': model, 'optimizer': optimizer})."
        )


class ParameterReplacements:
    """Which sharded parameter replaced which original one, for every model a strategy set up.

    The sharded parameters are looked up by name in their model when needed, never referenced here:
    ``to_empty`` and other conversions swap a sharded parameter's contents in place, which a weak
    reference to it would forbid.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref, weakref.ref, str]] = {}

    def record(self, before: dict[int, tuple[weakref.ref, str]], module: Module) -> None:
        """Pair the parameters named in ``before`` (taken before sharding) with ``module``'s new ones."""
        after = dict(module.named_parameters(remove_duplicate=False))
        module_ref = weakref.ref(module)
        for key, (old_ref, name) in before.items():
            old = old_ref()
            if old is not None and name in after and after[name] is not old:
                self._by_id[key] = (old_ref, module_ref, name)

    def replacement(self, parameter: Tensor) -> Tensor | None:
        """The sharded parameter that replaced ``parameter``, or ``None``."""
        entry = self._by_id.get(id(parameter))
        if entry is None or entry[0]() is not parameter:
            return None
        module = entry[1]()
        return None if module is None else module.get_parameter(entry[2])

    def _swap(self, parameter: Tensor) -> Tensor:
        new = self.replacement(parameter)
        return parameter if new is None else new

    def needs_repoint(self, optimizer: Optimizer) -> bool:
        return any(self.replacement(p) is not None for group in optimizer.param_groups for p in group["params"])

    def repoint(self, optimizer: Optimizer, method: str) -> Optimizer:
        """Swap replaced parameters in ``optimizer``'s groups for their sharded replacements, in place."""
        if not self.needs_repoint(optimizer):
            return optimizer
        check_no_state(optimizer, method)
        for group in optimizer.param_groups:
            old = group["params"]
            group["params"] = [self._swap(p) for p in old]
            _repoint_aliases(optimizer, old, group["params"])
        return optimizer


def _repoint_aliases(optimizer: Optimizer, old: list[Any], new: list[Any]) -> None:
    # Some optimizers keep their own reference to the parameter list (LBFGS: self._params).
    for name, value in vars(optimizer).items():
        if value is old:
            setattr(optimizer, name, new)
