"""Whether a plugin was built for the running fabric-core: its ``Requires-Dist: fabric-core...`` range.

A plugin declares the fabric-core versions it works with as an ordinary dependency::

    [project]
    dependencies = ["fabric-core>=0.1,<0.2"]

Discovery reads that range from the plugin's metadata and compares it with the running fabric-core::

    >>> core_specifier(["torch>=2.4", "fabric-core>=0.1,<0.2", "rich; extra == 'cli'"])
    '>=0.1,<0.2'
    >>> allows(">=0.1,<0.2", "0.1.3"), allows(">=0.1,<0.2", "0.2.0")
    (True, False)

Importing ``packaging`` costs 15-25 ms, most of the first ``Fabric(...)``'s budget, so the forms plugins
actually write (comparisons of plain release numbers, ``~=``, ``==X.*``, an ``extra ==`` marker) are
decided here, exactly as PEP 440 and PEP 508 decide them; anything else (pre-release or local
versions, ``===``, other environment markers) goes to ``packaging``.
"""

from __future__ import annotations

from collections.abc import Iterable

from fabric_core.plugins._hooks import CORE_DISTRIBUTION

#: PEP 440 operators, longest first so that "<=" is not read as "<"
_OPERATORS = ("===", "~=", "==", "!=", "<=", ">=", "<", ">")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it: ``Fabric_Core`` and ``fabric.core`` are ``fabric-core``."""
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-") if part)


def _split_name(requirement: str) -> tuple[str, str]:
    """``"fabric-core[x] >=0.1"`` -> ``("fabric-core", ">=0.1")``: the name and what follows its extras."""
    text = requirement.strip()
    end = 0
    while end < len(text) and ((text[end].isascii() and text[end].isalnum()) or text[end] in "._-"):
        end += 1
    rest = text[end:].lstrip()
    if rest.startswith("["):
        rest = rest.partition("]")[2].lstrip()
    return text[:end], rest


def _is_extra_only(marker: str) -> bool:
    """Whether ``marker`` is just ``extra == "name"``: the requirement belongs to an optional extra."""
    left, equals, right = marker.partition("==")
    value = right.strip()
    return (
        bool(equals)
        and left.strip() == "extra"
        and len(value) >= 2
        and value[0] == value[-1]
        and value[0] in "'\""
        and not any(quote in value[1:-1] for quote in "'\"")
    )


def _release(text: str) -> tuple[int, ...] | None:
    """``"0.1.2"`` -> ``(0, 1, 2)``; ``None`` for anything but a plain release number."""
    parts = text.split(".")
    if not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def _applies(marker: str) -> bool:
    """Whether a requirement with this environment marker applies to a plain install (no extras asked for)."""
    if not marker.strip():
        return True
    if _is_extra_only(marker):
        return False
    from packaging.markers import Marker

    return Marker(marker).evaluate({"extra": ""})


def core_specifier(requirements: Iterable[str] | None) -> str | None:
    """The fabric-core version range among ``requirements`` (``Requires-Dist`` values), or ``None``.

    Requirements guarded by an ``extra == ...`` marker, or whose marker does not hold here, are left
    out; several that apply are combined. ``""`` means fabric-core is required at any version.
    """
    found: list[str] = []
    for requirement in requirements or ():
        text, _, marker = requirement.partition(";")
        name, specifier = _split_name(text)
        if normalize(name) != CORE_DISTRIBUTION or not _applies(marker):
            continue
        if specifier.startswith("@"):
            specifier = ""  # a direct reference (a URL) says nothing about the version
        found.append(specifier.removeprefix("(").removesuffix(")").strip())
    if not found:
        return None
    return ",".join(specifier for specifier in found if specifier)


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def _clause_allows(operator: str, bound: tuple[int, ...], wildcard: bool, version: tuple[int, ...]) -> bool | None:
    """One clause against a final release; ``None`` when the clause is not valid PEP 440 here."""
    if wildcard:
        if operator not in ("==", "!="):
            return None
        prefix = _padded(version, bound)[0][: len(bound)]
        return (prefix == bound) == (operator == "==")
    if operator == "~=":
        if len(bound) < 2:
            return None
        # ~=X.Y.Z means >=X.Y.Z together with ==X.Y.*
        return _clause_allows(">=", bound, False, version) and _clause_allows("==", bound[:-1], True, version)
    # Between final releases, PEP 440's exclusions (pre-releases for <, post-releases for >) never apply.
    left, right = _padded(version, bound)
    return {
        "==": left == right,
        "!=": left != right,
        "<=": left <= right,
        ">=": left >= right,
        "<": left < right,
        ">": left > right,
    }[operator]


def _parse_clause(clause: str) -> tuple[str, tuple[int, ...], bool] | None:
    """``">=0.1"`` -> ``(">=", (0, 1), False)``, ``"==0.1.*"`` -> ``("==", (0, 1), True)``; ``None`` if unusual."""
    text = clause.strip()
    operator = next((op for op in _OPERATORS if text.startswith(op)), None)
    if operator is None or operator == "===":
        return None
    bound = text[len(operator) :].strip()
    wildcard = bound.endswith(".*")
    release = _release(bound[:-2] if wildcard else bound)
    return None if release is None else (operator, release, wildcard)


def allows(specifier: str, version: str) -> bool:
    """Whether the PEP 440 ``specifier`` (``">=0.1,<0.2"``) admits ``version``; pre-releases count.

    Raises ``ValueError`` when the specifier or the version is not valid PEP 440.
    """
    release = _release(version)
    if release is not None:
        verdicts = []
        for clause in specifier.split(","):
            parsed = _parse_clause(clause)
            verdict = None if parsed is None else _clause_allows(*parsed, release)
            if verdict is None:
                break
            verdicts.append(verdict)
        else:
            return all(verdicts)
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion

    try:
        return SpecifierSet(specifier).contains(version, prereleases=True)
    except (InvalidSpecifier, InvalidVersion) as err:
        raise ValueError(f"{specifier!r} against {version!r}: {err}") from err
