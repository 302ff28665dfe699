"""Names for the parameters the backend adds, unique against everything in the graph.

Relay binds parameters by name (``relay.build(mod, params=...)``) and TVM's frontends name
variables after the model's tensors, so a generated name equal to a graph input, another weight
or another generated name would silently bind the wrong array. :class:`NameTable` holds every
name in use and hands out prefixes whose every derived name is still free.

Examples
--------
>>> table = NameTable({"w", "w.data", "x"})
>>> table.claim("w", lambda p: [f"{p}.data", f"{p}.indices", f"{p}.indptr"])
'w.1'
>>> table.claim("w", lambda p: [f"{p}.data", f"{p}.indices", f"{p}.indptr"])
'w.2'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["NameTable"]


class NameTable:
    """Every name taken in one Relay function, and a way to take more without collisions.

    Parameters
    ----------
    taken : iterable of str
        Names already in use: the function's parameters (inputs and weights) and the keys of
        its params.
    """

    def __init__(self, taken: Iterable[str]) -> None:
        self._taken = set(taken)

    def __contains__(self, name: object) -> bool:
        return name in self._taken

    def claim(self, base: str, derive: Callable[[str], Iterable[str]]) -> str:
        """Take the first prefix ``base``, ``base.1``, ``base.2``, ... whose derived names are
        all free, mark them taken and return the prefix.

        Parameters
        ----------
        base : str
            The preferred prefix (the weight's own parameter name).
        derive : callable
            Prefix -> the names a lowering creates from it (``SparseOperand.params(p).keys()``).
        """
        candidates = (base if k == 0 else f"{base}.{k}" for k in range(len(self._taken) + 2))
        for prefix in candidates:
            names = list(derive(prefix))
            if len(set(names)) == len(names) and not any(n in self._taken for n in names):
                self._taken.update(names)
                return prefix
        raise RuntimeError(f"no free parameter name derived from {base!r}")  # unreachable
