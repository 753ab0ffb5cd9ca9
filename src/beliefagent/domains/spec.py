"""Declarative domain specs (TOML or JSON) as validated pydantic models.

A spec says everything a domain needs: features with their grids and text formats, the weight grid
of the hypothesis space, options per round, rounds and prompt wording (choice domains), or traits,
items and Graded Response Model parameters (questionnaire domains). Validation errors become
:class:`~beliefagent.errors.SpecError` naming the field and the value.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from beliefagent.domains.formats import FORMATS
from beliefagent.errors import SpecError

__all__ = [
    "ChoiceSpec",
    "FeatureSpec",
    "GRMSpec",
    "ItemSpec",
    "LevelRange",
    "QuestionnaireSpec",
    "WeightGrid",
    "load_spec",
    "parse_spec",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LevelRange(_Strict):
    """An evenly spaced grid: ``start, start + step, ...`` (``count`` levels)."""

    start: float
    step: float = Field(gt=0)
    count: int = Field(ge=2)


class FeatureSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str = Field(min_length=1)
    format: str
    levels: LevelRange | None = None
    values: list[float | str] | None = None
    codes: list[float] | None = None
    template: str | None = None
    template_one: str | None = None

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {sorted(FORMATS)}, got {self.format!r}")
        if (self.levels is None) == (self.values is None):
            raise ValueError("give exactly one of 'levels' (a range) or 'values' (a list)")
        n = self.n_levels
        if n < 2:
            raise ValueError(f"a feature needs at least 2 levels, got {n}")
        if self.codes is not None:
            if len(self.codes) != n:
                raise ValueError(f"'codes' has {len(self.codes)} entries for {n} levels")
            if any(not 0.0 <= c <= 1.0 for c in self.codes):
                raise ValueError("'codes' must lie in [0, 1]")
        return self

    @property
    def n_levels(self) -> int:
        if self.levels is not None:
            return self.levels.count
        assert self.values is not None
        return len(self.values)

    def raw_values(self) -> list[float | str]:
        if self.levels is not None:
            lv = self.levels
            return [lv.start + i * lv.step for i in range(lv.count)]
        assert self.values is not None
        return list(self.values)

    def level_codes(self) -> list[float]:
        """The coding of each level to [0, 1]: explicit ``codes`` or evenly spaced."""
        if self.codes is not None:
            return list(self.codes)
        n = self.n_levels
        return [i / (n - 1) for i in range(n)]


class WeightGrid(_Strict):
    grid: list[float] = Field(min_length=1)
    exclude_zero: bool = True


class ChoicePrompts(_Strict):
    intro: str
    question: str


class ChoiceSpec(_Strict):
    """A domain where the user picks one of several options each round."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]*$")
    kind: Literal["choice"] = "choice"
    description: str = ""
    item: str = Field(min_length=1, description="label prefix, e.g. 'Flight' -> 'Flight 1'")
    options_per_round: int = Field(default=3, ge=2, le=26)
    rounds: int = Field(default=5, ge=1)
    weights: WeightGrid
    prompts: ChoicePrompts
    features: list[FeatureSpec] = Field(min_length=1)
    sweep_order: list[str] | None = None
    sweeps: dict[str, list[str]] | None = Field(
        default=None,
        description="'K' -> the features of the K-feature task, in the order they are written "
        "(``flight-K``); K without an entry takes the first K of ``sweep_order``.",
    )

    @field_validator("features")
    @classmethod
    def _unique_names(cls, features: list[FeatureSpec]) -> list[FeatureSpec]:
        names = [f.name for f in features]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate feature names: {sorted(dup)}")
        return features

    @model_validator(mode="after")
    def _check(self) -> ChoiceSpec:
        names = [f.name for f in self.features]
        if self.sweep_order is not None and sorted(self.sweep_order) != sorted(names):
            raise ValueError("'sweep_order' must list every feature exactly once")
        for k, order in (self.sweeps or {}).items():
            if not k.isdigit() or int(k) != len(order):
                raise ValueError(f"sweeps.{k} must list exactly {k} features, got {len(order)}")
            unknown = sorted(set(order) - set(names))
            if unknown or len(set(order)) != len(order):
                raise ValueError(f"sweeps.{k} must name distinct features of the spec, got {order}")
        return self


class GRMSpec(_Strict):
    discrimination: float = Field(gt=0)
    thresholds: list[float] = Field(min_length=1)
    center: float = 3.0

    @model_validator(mode="after")
    def _check(self) -> GRMSpec:
        if any(b >= c for b, c in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise ValueError("'thresholds' must increase strictly")
        return self


class ItemSpec(_Strict):
    text: str = Field(min_length=1)
    trait: str
    keyed: Literal[1, -1] = 1


class QuestionnairePrompts(_Strict):
    intro: str
    question: str


class QuestionnaireSpec(_Strict):
    """A domain where the user answers questionnaire items on a Likert scale."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]*$")
    kind: Literal["questionnaire"] = "questionnaire"
    description: str = ""
    levels: list[float] = Field(min_length=2)
    scale: list[str] = Field(min_length=2)
    traits: list[str] = Field(min_length=1)
    grm: GRMSpec
    prompts: QuestionnairePrompts
    items: list[ItemSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> QuestionnaireSpec:
        if len(self.grm.thresholds) != len(self.scale) - 1:
            raise ValueError(
                f"grm.thresholds needs {len(self.scale) - 1} entries for a {len(self.scale)}-point "
                f"scale, got {len(self.grm.thresholds)}"
            )
        unknown = sorted({it.trait for it in self.items} - set(self.traits))
        if unknown:
            raise ValueError(f"items name unknown traits: {unknown}")
        return self


Spec = Annotated[ChoiceSpec | QuestionnaireSpec, Field(discriminator="kind")]


class _SpecDoc(BaseModel):
    spec: Spec


def parse_spec(data: dict[str, Any], *, source: str = "<spec>") -> ChoiceSpec | QuestionnaireSpec:
    """Validate a spec given as a dict; errors name the field path and the offending value."""
    if not isinstance(data, dict):
        raise SpecError("a spec must be a table/object", field=source, value=type(data).__name__)
    data = {"kind": "choice", **data}
    try:
        return _SpecDoc.model_validate({"spec": data}).spec
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"][1:] if p not in ("choice", "questionnaire"))
        raise SpecError(
            err["msg"], field=f"{source}:{loc or 'spec'}", value=err.get("input")
        ) from exc


def load_spec(path: str | Path) -> ChoiceSpec | QuestionnaireSpec:
    """Read a TOML (``.toml``) or JSON (``.json``) spec file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SpecError(
            f"cannot read spec file: {exc.strerror}", field="path", value=str(p)
        ) from exc
    try:
        data = json.loads(raw) if p.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpecError(
            f"not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}", field="path", value=str(p)
        ) from exc
    return parse_spec(data, source=p.name)
