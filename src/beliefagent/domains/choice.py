"""Choice domains: each round the user picks one of ``n_options`` options described by features.

An option is held as a row of level indices, one per feature (``int``, shape ``(n_features,)``);
an option set is ``(n_options, n_features)``. :meth:`ChoiceDomain.codes` maps levels to the
[0, 1] coding that rewards are computed on; rendering and parsing go through the spec's formats.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from beliefagent.domains.formats import render_value
from beliefagent.domains.spec import ChoiceSpec, FeatureSpec
from beliefagent.errors import EmptyHypothesisSpaceError, OptionError, SpecError

__all__ = ["ChoiceDomain"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


class ChoiceDomain:
    """A validated choice domain built from a :class:`ChoiceSpec`."""

    kind = "choice"

    def __init__(self, spec: ChoiceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.item = spec.item
        self.n_options = spec.options_per_round
        self.rounds = spec.rounds
        self.features: tuple[FeatureSpec, ...] = tuple(spec.features)
        self.feature_names: tuple[str, ...] = tuple(f.name for f in spec.features)
        self.n_features = len(self.features)
        self.n_levels: tuple[int, ...] = tuple(f.n_levels for f in self.features)
        self._n_levels = np.array(self.n_levels, dtype=np.int64)  # (n_features,)
        self._codes = [np.asarray(f.level_codes(), dtype=np.float64) for f in self.features]
        self._raw = [f.raw_values() for f in self.features]
        self._text: list[list[str]] = []
        self._lookup: list[dict[str, int]] = []
        for f, raws in zip(self.features, self._raw, strict=True):
            texts = [render_value(f.format, v, f.template, f.template_one) for v in raws]
            lookup: dict[str, int] = {}
            for i, t in enumerate(texts):
                clash = next(
                    (g for g in self.features if f", {g.label.lower()}:" in t.lower()), None
                )
                if clash is not None or t != t.strip() or not t:
                    raise SpecError(
                        "a rendered value must be non-empty, unpadded and must not contain "
                        "', <feature label>:' (the option text would not parse back)",
                        field=f"features.{f.name}",
                        value=t,
                    )
                if _norm(t) in lookup:
                    raise SpecError(
                        "two levels render to the same text", field=f"features.{f.name}", value=t
                    )
                lookup[_norm(t)] = i
            self._text.append(texts)
            self._lookup.append(lookup)
        labels = r",\s*".join(rf"{re.escape(f.label)}\s*:\s*(.+?)" for f in self.features)
        self._pattern = re.compile(
            rf"^\s*(?:{re.escape(self.item)}\s+(\d+)\s*:\s*)?{labels}\s*\.?\s*$", re.IGNORECASE
        )
        grid = np.asarray(spec.weights.grid, dtype=np.float64)
        weights = np.array(list(itertools.product(grid, repeat=self.n_features)), dtype=np.float64)
        if spec.weights.exclude_zero:
            weights = weights[np.any(weights != 0.0, axis=1)]
        if weights.shape[0] == 0:
            raise EmptyHypothesisSpaceError(
                "the weight grid leaves no hypothesis",
                field="weights.grid",
                value=spec.weights.grid,
            )
        self._weights = weights  # (n_hyp, n_features), itertools.product order

    # --- hypothesis space -------------------------------------------------------------------
    def hypothesis_weights(self) -> FloatArray:
        """Every user's weight vector, ``(n_hyp, n_features)``, in ``itertools.product`` order."""
        return self._weights

    # --- coding -----------------------------------------------------------------------------
    def codes(self, levels: npt.ArrayLike) -> FloatArray:
        """Level indices ``(..., n_features)`` -> codes in [0, 1] ``(..., n_features)``."""
        lv = np.asarray(levels)
        out = np.empty(lv.shape, dtype=np.float64)
        for j, table in enumerate(self._codes):
            out[..., j] = table[lv[..., j]]
        return out

    def label(self, index: int) -> str:
        """The label of option ``index`` (0-based) as written in text: ``"1"``, ``"2"``, ..."""
        return str(index + 1)

    # --- validation -------------------------------------------------------------------------
    def validate_option_set(self, option_set: npt.ArrayLike) -> IntArray:
        """Check an option set of level indices; returns it as ``(n_options, n_features)`` ints."""
        arr = np.asarray(option_set)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise OptionError(
                f"expected shape (n_options, {self.n_features})", field="options", value=arr.shape
            )
        if arr.shape[0] != self.n_options:
            raise OptionError(
                f"{self.name} shows {self.n_options} options a round",
                field="options",
                value=arr.shape[0],
            )
        return self._check_levels(arr, "options")

    def _check_levels(self, arr: npt.NDArray[Any], name: str) -> IntArray:
        if arr.dtype.kind not in "iu":  # signed or unsigned integers
            raise OptionError("option levels must be integers", field=name, value=arr.dtype)
        off = (arr < 0) | (arr >= self._n_levels)  # (n_options, n_features), one pass
        if off.any():
            i, j = (int(k[0]) for k in np.nonzero(off.T)[::-1])  # first feature, first option
            raise OptionError(
                f"level off the grid (0..{self.n_levels[j] - 1})",
                field=f"{name}.{self.feature_names[j]}",
                value=int(arr[i, j]),
            )
        return arr.astype(np.int64)  # a copy: the caller may reuse its array

    def validate_candidates(self, candidates: npt.ArrayLike, k: int | None = None) -> IntArray:
        """Check candidate options ``(N, n_features)`` of level indices to choose ``k`` (default:
        the options per round) from: on the grid, pairwise distinct, and ``N >= k``."""
        need = self.n_options if k is None else k
        arr = np.asarray(candidates)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise OptionError(
                f"expected shape (n_candidates, {self.n_features})",
                field="candidates",
                value=arr.shape,
            )
        if arr.shape[0] < need:
            raise OptionError(
                f"need at least {need} candidates to choose {need}",
                field="candidates",
                value=arr.shape[0],
            )
        lv = self._check_levels(arr, "candidates")
        _, first, counts = np.unique(lv, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = int(np.sort(first[counts > 1])[0])
            raise OptionError(
                "duplicate candidate (every candidate must differ)",
                field=f"candidates[{dup}]",
                value=self.render_option(lv[dup], dup),
            )
        return lv

    # --- rendering and parsing --------------------------------------------------------------
    def render_option(self, levels: Sequence[int] | IntArray, index: int) -> str:
        """``"Flight 1: departure time: 02:00 PM, duration: 30 min, ..."``."""
        parts = [f"{f.label}: {self._text[j][int(levels[j])]}" for j, f in enumerate(self.features)]
        return f"{self.item} {self.label(index)}: " + ", ".join(parts)

    def render_options(self, option_set: npt.ArrayLike) -> list[str]:
        arr = self.validate_option_set(option_set)
        return [self.render_option(row, i) for i, row in enumerate(arr)]

    def feature_values(self, levels: Sequence[int] | IntArray) -> dict[str, str]:
        """The rendered value of each feature, by feature name."""
        return {f.name: self._text[j][int(levels[j])] for j, f in enumerate(self.features)}

    def parse_option(self, text: str) -> tuple[int, ...]:
        """Parse one option's text back into level indices (the label prefix is optional)."""
        m = self._pattern.match(text)
        if m is None:
            raise OptionError(
                f"does not read as a {self.name} option ('{self.features[0].label}: ..., ...')",
                field="option",
                value=text,
            )
        levels = []
        for j, f in enumerate(self.features):
            value = m.group(j + 2)
            idx = self._lookup[j].get(_norm(value))
            if idx is None:
                raise OptionError("value off the grid", field=f"option.{f.name}", value=value)
            levels.append(idx)
        return tuple(levels)

    def parse_option_set(self, texts: Sequence[str]) -> IntArray:
        """Parse ``n_options`` option texts into an option set ``(n_options, n_features)``."""
        if isinstance(texts, str):
            raise OptionError("expected a list of option texts", field="options", value=texts)
        arr = np.array([self.parse_option(t) for t in texts], dtype=np.int64).reshape(
            len(texts), self.n_features
        )
        return self.validate_option_set(arr)

    def option_from_values(self, values: Mapping[str, Any]) -> tuple[int, ...]:
        """An option from ``{feature: value}``; a value is its text (``"$370"``) or raw grid value
        (``370``). Unknown or missing features and off-grid values raise :class:`OptionError`."""
        unknown = sorted(set(values) - set(self.feature_names))
        if unknown:
            raise OptionError(
                f"unknown feature (known: {list(self.feature_names)})",
                field="option",
                value=unknown[0],
            )
        levels = []
        for j, f in enumerate(self.features):
            if f.name not in values:
                raise OptionError("missing feature", field=f"option.{f.name}", value=None)
            v = values[f.name]
            idx = self._lookup[j].get(_norm(str(v))) if isinstance(v, str) else None
            if idx is None:
                for i, raw in enumerate(self._raw[j]):
                    if (isinstance(raw, str) and raw == v) or (
                        not isinstance(raw, str)
                        and not isinstance(v, str)
                        and abs(float(raw) - float(v)) < 1e-9
                    ):
                        idx = i
                        break
            if idx is None:
                raise OptionError("value off the grid", field=f"option.{f.name}", value=v)
            levels.append(idx)
        return tuple(levels)

    # --- generation -------------------------------------------------------------------------
    def random_option_sets(self, rng: np.random.Generator, n: int) -> IntArray:
        """``n`` option sets with levels drawn uniformly, no two options identical within a set.
        Returns ``(n, n_options, n_features)``."""
        highs = np.asarray(self.n_levels)
        sets = rng.integers(0, highs, size=(n, self.n_options, self.n_features))
        while True:
            dup = np.zeros(n, dtype=bool)
            for a, b in itertools.combinations(range(self.n_options), 2):
                dup |= np.all(sets[:, a] == sets[:, b], axis=-1)
            if not dup.any():
                return sets.astype(np.int64)
            sets[dup] = rng.integers(
                0, highs, size=(int(dup.sum()), self.n_options, self.n_features)
            )

    # --- derived domains --------------------------------------------------------------------
    def subset(
        self, names: Sequence[str], *, name: str | None = None, keep_order: bool = False
    ) -> ChoiceDomain:
        """The same domain restricted to ``names``: in the spec's order, or in the order of
        ``names`` with ``keep_order`` (the order options are written in and rewards follow)."""
        unknown = [n for n in names if n not in self.feature_names]
        if unknown:
            raise SpecError(
                f"unknown feature (known: {list(self.feature_names)})",
                field="features",
                value=unknown[0],
            )
        if len(set(names)) < 1:
            raise SpecError("need at least one feature", field="features", value=list(names))
        if len(set(names)) != len(names):
            raise SpecError("a feature is named twice", field="features", value=list(names))
        if keep_order:
            by_name = {f.name: f for f in self.features}
            keep = [by_name[n] for n in names]
        else:
            keep = [f for f in self.features if f.name in set(names)]
        spec = self.spec.model_copy(
            update={
                "features": keep,
                "sweep_order": None,
                "sweeps": None,
                "name": name or f"{self.name}-{len(keep)}",
            }
        )
        return ChoiceDomain(spec)

    def __repr__(self) -> str:
        return (
            f"ChoiceDomain({self.name!r}, features={list(self.feature_names)}, "
            f"n_hypotheses={len(self._weights)})"
        )
