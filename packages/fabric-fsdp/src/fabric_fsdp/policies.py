"""Which submodules get their own FSDP group (``auto_wrap_policy``) and which recompute their activations.

A policy is given the Lightning way:

- a set (or list, tuple) of module classes, e.g. ``{TransformerBlock}``: every submodule of one of
  these classes;
- a callable ``policy(module) -> bool``;
- a callable in FSDP1's form ``policy(module, recurse, nonwrapped_numel) -> bool``, such as
  ``functools.partial(torch.distributed.fsdp.wrap.size_based_auto_wrap_policy, min_num_params=10**6)``:
  it is asked, bottom-up, about each submodule with ``recurse=False`` and the number of its parameters
  not already in a wrapped descendant;
- an object with a ``_module_classes`` attribute (FSDP1's ``ModuleWrapPolicy``): those classes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from torch.nn import Module

#: ``predicate(module, nonwrapped_numel) -> bool``
Predicate = Callable[[Module, int], bool]


def as_predicate(policy: Any, option: str) -> Predicate | None:
    """Normalise a policy given as ``option`` (e.g. ``"FSDPStrategy(auto_wrap_policy=...)"``) into a predicate.

    A bad value is a ``TypeError`` naming it.
    """
    if policy is None:
        return None
    classes = getattr(policy, "_module_classes", None)
    if classes is not None:
        policy = set(classes)
    if isinstance(policy, (set, frozenset, list, tuple)):
        return _class_predicate(tuple(policy), option)
    if callable(policy):
        if _takes_fsdp1_arguments(policy):
            return lambda module, numel: bool(policy(module=module, recurse=False, nonwrapped_numel=numel))
        return lambda module, numel: bool(policy(module))
    given = option.replace("...", repr(policy))
    raise TypeError(
        f"{given} ({type(policy).__name__}) is not a policy: pass a set of module classes such as "
        "{TransformerBlock}, or a callable taking a module and returning whether to apply it there."
    )


def _class_predicate(classes: tuple[Any, ...], option: str) -> Predicate:
    bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, Module))]
    if bad or not classes:
        given = option.replace("...", repr(set(classes)))
        found = "got " + ", ".join(repr(b) for b in bad) if bad else "the set is empty"
        raise TypeError(f"{given} must name torch.nn.Module subclasses, such as {{TransformerBlock}}; {found}.")
    return lambda module, numel: isinstance(module, classes)


def _takes_fsdp1_arguments(policy: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(policy).parameters
    except (TypeError, ValueError):
        return False
    return "recurse" in parameters or "nonwrapped_numel" in parameters


def _post_order(module: Module) -> Iterable[Module]:
    for child in module.children():
        yield from _post_order(child)
    yield module


def modules_to_shard(root: Module, predicate: Predicate | None) -> list[Module]:
    """The submodules of ``root`` (never ``root`` itself) that get their own FSDP group, children first.

    ``fully_shard`` must be applied bottom-up, so the list is in post-order.
    """
    if predicate is None:
        return []
    wrapped: set[int] = set()
    selected = []
    for module in _post_order(root):
        if module is root:
            break
        own = [p for p in module.parameters() if id(p) not in wrapped]
        if predicate(module, sum(p.numel() for p in own)):
            selected.append(module)
            wrapped.update(id(p) for p in own)
    return selected


def modules_to_checkpoint(root: Module, predicate: Predicate | None) -> list[Module]:
    """The outermost submodules of ``root`` whose activations are recomputed in backward."""
    if predicate is None:
        return []
    selected = []

    def visit(module: Module) -> None:
        for child in module.children():
            if predicate(child, sum(p.numel() for p in child.parameters())):
                selected.append(child)  # its own descendants are recomputed with it
            else:
                visit(child)

    visit(root)
    return selected
