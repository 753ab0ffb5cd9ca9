"""Arrays that depend only on the domain, built once per process and shared read-only.

A teacher's own state is its posterior (``n_hyp`` float64) and its history. Everything else it
needs — the hypothesis weights and the per-feature value codes that give posterior marginals —
is the same for every teacher of a domain, so :func:`domain_tables` builds it on first use,
caches it per domain object (domains from :func:`~beliefagent.domains.load_domain` are
themselves cached), and marks every array read-only. For ``flight8`` (390,624 hypotheses) the
codes are 3 MiB and the weights (owned by the domain) 24 MiB, shared once, where each teacher
used to build a private 119 MiB one-hot table; a session keeps about 3 MiB of its own (its
posterior).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DomainTables", "Marginals", "domain_tables"]

FloatArray = npt.NDArray[np.float64]


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    view = array.view()
    view.flags.writeable = False
    return view


class Marginals:
    """Per-column posterior marginals over the distinct values of ``weights (n_hyp, n_cols)``.

    Stores, per column, the index of each hypothesis' value in :attr:`support` (``int8`` or
    ``int16``, ``(n_cols, n_hyp)``); a marginal is then one weighted ``bincount`` per column.
    """

    def __init__(self, weights: FloatArray, names: tuple[str, ...]) -> None:
        support, inverse = np.unique(weights, return_inverse=True)
        inverse = inverse.reshape(weights.shape)  # (n_hyp, n_cols)
        dtype = np.int8 if len(support) <= 127 else np.int16 if len(support) <= 32767 else np.int64
        self.names = names
        self.support: list[float] = support.tolist()
        self._codes = _frozen(np.ascontiguousarray(inverse.T, dtype=dtype))  # (n_cols, n_hyp)

    @property
    def nbytes(self) -> int:
        return int(self._codes.nbytes)

    def __call__(self, post: FloatArray) -> dict[str, list[float]]:
        k = len(self.support)
        return {
            name: np.bincount(codes, weights=post, minlength=k).tolist()
            for name, codes in zip(self.names, self._codes, strict=True)
        }


class DomainTables:
    """The read-only, per-domain arrays a teacher reads (see the module docstring)."""

    def __init__(self, weights: FloatArray, names: tuple[str, ...]) -> None:
        w = np.asarray(weights, dtype=np.float64)
        self.weights = _frozen(w)  # (n_hyp, n_features); codes @ weights.T is option-major
        self.marginals = Marginals(w, names)
        self.n_hyp = int(w.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes these tables add to the domain's own weights."""
        return self.marginals.nbytes


_TABLES: weakref.WeakKeyDictionary[Any, DomainTables] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def domain_tables(domain: Any, names: tuple[str, ...]) -> DomainTables:
    """The shared tables of ``domain`` (anything with ``hypothesis_weights()``), built on first
    use; thread-safe."""
    tables = _TABLES.get(domain)
    if tables is None:
        with _LOCK:
            tables = _TABLES.get(domain)
            if tables is None:
                tables = DomainTables(domain.hypothesis_weights(), names)
                _TABLES[domain] = tables
    return tables
