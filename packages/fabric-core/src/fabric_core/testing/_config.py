"""Reading the class attributes a conformance subclass must set, with an error that says which one."""

from __future__ import annotations

from typing import Any


def required(case: object, attribute: str, expected: str, example: str) -> Any:
    """The value of ``attribute`` on the test class, or a ``TypeError`` telling the author what to set."""
    value = getattr(type(case), attribute, None)
    if value is None:
        raise TypeError(
            f"{type(case).__name__} does not set `{attribute}`: expected {expected}. Add it to the class "
            f"body, e.g. `{attribute} = {example}`."
        )
    return value
