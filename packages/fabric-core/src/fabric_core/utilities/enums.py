"""String enumerations that compare with plain strings regardless of case."""

from __future__ import annotations

import warnings
from enum import Enum
from typing import Literal, TypeVar

_E = TypeVar("_E", bound="CaseInsensitiveEnum")
_Source = Literal["key", "value", "any"]


class CaseInsensitiveEnum(str, Enum):
    """A ``str`` enumeration whose members equal their value in any letter case.

    Members hash by their lower-cased value, so ``"CPU"`` and ``"cpu"`` find the same set or dict
    entry. :meth:`from_str` looks a member up by name, by value, or by either.

    Example::

        class Mode(CaseInsensitiveEnum):
            TRAIN = "train"
            EVAL = "eval"

        Mode.TRAIN == "Train"  # True
        Mode.from_str("eval")  # Mode.EVAL (by name, any case)
        Mode.from_str("EVAL", source="value")  # Mode.EVAL
    """

    @classmethod
    def from_str(cls: type[_E], value: str, source: _Source = "key") -> _E:
        """The member whose name (``"key"``), value (``"value"``) or either (``"any"``, names first) is ``value``.

        Names match in any case, values exactly. Raises ``ValueError`` listing the accepted strings.
        """
        if source not in ("key", "value", "any"):
            raise ValueError(f"{cls.__name__}.from_str(source={source!r}): expected 'key', 'value' or 'any'.")
        if source != "value":
            for name, member in cls.__members__.items():
                if name.lower() == value.lower():
                    return member
        if source != "key":
            for member in cls.__members__.values():
                if member.value == value:
                    return member
        raise ValueError(
            f"{value!r} is not a {cls.__name__}: expected one of {cls._accepted(source)} (matching by {source})."
        )

    @classmethod
    def try_from_str(cls: type[_E], value: str, source: _Source = "key") -> _E | None:
        """Like :meth:`from_str`, but warn and return ``None`` when nothing matches."""
        try:
            return cls.from_str(value, source)
        except ValueError as err:
            warnings.warn(str(err), UserWarning, stacklevel=2)
            return None

    @classmethod
    def _accepted(cls, source: _Source) -> list[str]:
        names = list(cls.__members__)
        values = [member.value for member in cls.__members__.values()]
        return {"key": names, "value": values}.get(source, names + values)

    def __eq__(self, other: object) -> bool:
        other_value = other.value if isinstance(other, Enum) else other
        return self.value.lower() == str(other_value).lower()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.value.lower())


#: Lightning's name for :class:`CaseInsensitiveEnum` (``lightning.fabric.utilities.LightningEnum``).
LightningEnum = CaseInsensitiveEnum
