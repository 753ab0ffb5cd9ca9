"""The trajectory record schema: what one line of a trajectory log holds.

A log is a sequence of records, one JSON object per line, told apart by ``kind``::

    {"kind": "session_start", "schema_version": 1, "session_id": "s1", ...}
    {"kind": "turn",          "schema_version": 1, "session_id": "s1", "round": 0, ...}
    {"kind": "turn",          "schema_version": 1, "session_id": "s1", "round": 1, ...}
    {"kind": "session_end",   "schema_version": 1, "session_id": "s1", "rounds": 2, ...}

A :class:`Turn` carries everything needed to re-run the Bayesian teacher over the history (each
option's text and features, and the user's choice), so teaching data can be exported from logs
long after the run. Production logs may carry little more than the options, the model's replies
and the user's choices: beyond ``session_id``, ``domain``, ``round`` and ``options``, every field
of a turn is optional.

Versioning
----------
``SCHEMA_VERSION`` is bumped only by a *breaking* change (a field removed, renamed or retyped).
Additive changes (a new optional field) keep the version. The two directions are treated
differently on purpose:

* **Writing is strict.** Every model uses ``extra="forbid"``: a misspelt field name is a bug in the
  caller and fails at construction, before anything reaches a log.
* **Reading is lenient about additions.** :func:`parse_record` (which the store uses) drops
  fields it does not know, so a log written by a newer beliefagent that added optional fields
  still reads; the dropped names are collected in ``ignored`` for the caller to report. A record
  whose ``schema_version`` is newer than :data:`SCHEMA_VERSION`, or whose ``kind`` (or a
  ``Literal`` value such as ``Decision.source``) is unknown, is *not* guessed at: it is rejected
  with a message that says so, and the store reports it as an invalid line.

Validation errors
-----------------
Constructing a record in code with bad input raises :class:`~beliefagent.errors.InputError`
(a choice index out of range raises its subclass :class:`~beliefagent.errors.ChoiceError`), with
the offending field and value in the message; pydantic's ``ValidationError`` is chained as the
cause. Attribute assignment is validated too, raises the same errors and leaves the old value in
place. Parsing stored data with :func:`parse_record` raises
:class:`~beliefagent.errors.DataError` instead (the store adds the path and line);
``model_validate`` raises pydantic's ``ValidationError`` as usual. The writer re-validates every
record that did not come from its validating constructor (copies made with
``model_copy(update=...)``, ``model_construct``, records read back) just before writing it, so a
line it writes always reads back; a record built by its constructor is valid already.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from beliefagent.errors import ChoiceError, DataError, InputError

__all__ = [
    "SCHEMA_VERSION",
    "BeliefSnapshot",
    "Decision",
    "DecisionSource",
    "EvalResult",
    "Message",
    "OptionRecord",
    "Record",
    "SessionEnd",
    "SessionStart",
    "Turn",
    "parse_record",
    "utc_now",
]

SCHEMA_VERSION = 1
"""Version of the record schema; bumped only by breaking changes (see the module docstring)."""

MARGINAL_DECIMALS = 4
"""Belief marginals are rounded to this many decimals to keep turn records compact."""

FeatureValue: TypeAlias = float | int | str
DecisionSource: TypeAlias = Literal["llm", "bayes", "oracle", "random", "none"]
"""Who picked the option shown to the user: the LLM, the Bayesian teacher, the oracle (evaluation
only), a random baseline, or nobody (nothing was shown, e.g. the turn failed)."""


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC (the default ``created_at``)."""
    return datetime.now(UTC)


_MISSING = object()


def _first_input_error(exc: ValidationError) -> InputError:
    """Map a pydantic ValidationError to beliefagent's InputError (or the ChoiceError a validator
    raised), naming the first offending field and its value."""
    errors = exc.errors()
    for err in errors:
        original = err.get("ctx", {}).get("error")
        if isinstance(original, InputError):
            return original
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "record"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return InputError(first["msg"] + more, field=field, value=first.get("input"))


_CHECKED: weakref.WeakValueDictionary[int, BaseModel] = weakref.WeakValueDictionary()


class _Model(BaseModel):
    """Base of every record model: strict on write, lenient about unknown fields on read."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    if not TYPE_CHECKING:
        # Hidden from type checkers so they keep pydantic's synthesised, typed signature.
        def __init__(self, /, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise _first_input_error(exc) from exc
            _CHECKED[id(self)] = self

        # Only the error type differs from BaseModel.__init__, so tell pydantic not to route
        # validation (nested models, parse_record) through this __init__: that would drop the
        # validation context that lenient reading relies on. Guarded by the lenient-read tests.
        __init__.__pydantic_base_init__ = True

        def __setattr__(self, name: str, value: Any) -> None:
            previous = self.__dict__.get(name, _MISSING)
            try:
                super().__setattr__(name, value)
            except ValidationError as exc:
                # pydantic leaves the rejected value in place when a model validator fails.
                if previous is not _MISSING:
                    self.__dict__[name] = previous
                raise _first_input_error(exc) from exc

    @property
    def checked(self) -> bool:
        """True for a record built through its validating constructor (and changed since only
        by validated assignment): the writer need not validate it again. Copies
        (``model_copy(update=...)`` bypasses validation), ``model_construct`` and records read
        back are not checked."""
        return _CHECKED.get(id(self)) is self

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_fields(cls, data: Any, info: ValidationInfo) -> Any:
        context = info.context
        if not (isinstance(context, dict) and context.get("lenient")) or not isinstance(data, dict):
            return data
        unknown = data.keys() - cls.model_fields.keys()
        if not unknown:
            return data
        ignored = context.get("ignored")
        if isinstance(ignored, set):
            ignored.update(f"{cls.__name__}.{name}" for name in unknown)
        return {key: value for key, value in data.items() if key not in unknown}


class _RecordBase(_Model):
    """Fields every top-level record carries."""

    kind: str
    schema_version: int = SCHEMA_VERSION
    session_id: str = Field(min_length=1)
    created_at: AwareDatetime = Field(default_factory=utc_now)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            newer = " (written by a newer beliefagent?)" if value > SCHEMA_VERSION else ""
            raise ValueError(
                f"schema_version {value} is not supported; this beliefagent reads "
                f"version {SCHEMA_VERSION}{newer}"
            )
        return value

    @field_validator("created_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class Message(_Model):
    """One chat message of the prompt sent to the backend."""

    role: str
    content: str


class OptionRecord(_Model):
    """One option shown in a round: the text the model saw and, when known, its features
    (``None`` in production logs that only kept the text)."""

    text: str
    features: dict[str, FeatureValue] | None = None


class SelectionRecord(_Model):
    """How the options of a round were chosen from candidates (active elicitation):
    ``indices[i]`` is the position in ``candidates`` of the round's option ``i``."""

    strategy: str
    candidates: list[OptionRecord]
    indices: list[int]
    search: str | None = None
    information_gain: float | None = None

    @model_validator(mode="after")
    def _indices_in_candidates(self) -> SelectionRecord:
        n = len(self.candidates)
        for i in self.indices:
            if not 0 <= i < n:
                raise ChoiceError(f"out of range for {n} candidate(s)", field="indices", value=i)
        if len(set(self.indices)) != len(self.indices):
            raise InputError("a candidate is chosen twice", field="indices", value=self.indices)
        return self


class Decision(_Model):
    """What the policy did with the two recommendations."""

    policy: str
    source: DecisionSource
    reason: str = ""


class BeliefSnapshot(_Model):
    """A compact picture of the Bayesian belief after the turn.

    ``marginals`` maps each feature to the posterior marginal over its weight levels, rounded to
    :data:`MARGINAL_DECIMALS` decimals. ``emptied`` is true when the observations eliminated every
    hypothesis; ``available`` is false when no belief could be kept for this domain (then the
    other fields are placeholders).
    """

    entropy: float
    n_hypotheses: int = Field(ge=0)
    map_index: int | None = Field(default=None, ge=0)
    marginals: dict[str, list[float]] = Field(default_factory=dict)
    emptied: bool = False
    available: bool = True

    @field_validator("marginals")
    @classmethod
    def _round_marginals(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        return {name: [round(p, MARGINAL_DECIMALS) for p in probs] for name, probs in value.items()}

    @model_validator(mode="after")
    def _map_in_range(self) -> BeliefSnapshot:
        if self.map_index is not None and self.map_index >= self.n_hypotheses:
            raise InputError(
                f"out of range for {self.n_hypotheses} hypotheses",
                field="belief.map_index",
                value=self.map_index,
            )
        return self


class SessionStart(_RecordBase):
    """The first record of a session: who, which domain, and how the assistant is configured."""

    kind: Literal["session_start"] = "session_start"
    user_id: str | None = None
    domain: str
    policy: str
    backend: str | None = None
    model: str | None = None
    adapter: str | None = None
    settings: dict[str, JsonValue] = Field(default_factory=dict)
    meta: dict[str, JsonValue] = Field(default_factory=dict)


_CHOICE_FIELDS = ("llm_choice", "bayes_choice", "shown_choice", "user_choice")
_DISTRIBUTION_FIELDS = ("llm_distribution", "bayes_distribution")


class Turn(_RecordBase):
    """One round of a dialogue.

    Choice fields are indices into ``options`` (``None`` when unknown or absent); distributions,
    when present, have one probability per option. ``raw_replies`` holds every backend reply of
    the round, re-asks included; ``errors`` the problems met (parse failures, backend errors) and
    ``invalid`` marks a turn whose model answer could not be used.
    """

    kind: Literal["turn"] = "turn"
    user_id: str | None = None
    domain: str
    round: int = Field(ge=0)
    options: list[OptionRecord]
    prompt: list[Message] | None = None
    raw_replies: list[str] = Field(default_factory=list)
    llm_choice: int | None = None
    llm_distribution: list[float] | None = None
    bayes_choice: int | None = None
    bayes_distribution: list[float] | None = None
    shown_choice: int | None = None
    decision: Decision | None = None
    user_choice: int | None = None
    belief: BeliefSnapshot | None = None
    backend: str | None = None
    model: str | None = None
    adapter: str | None = None
    latency_s: float | None = Field(default=None, ge=0)
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    errors: list[str] = Field(default_factory=list)
    invalid: bool = False
    user_message: str | None = None
    selection: SelectionRecord | None = None

    @model_validator(mode="after")
    def _indices_in_range(self) -> Turn:
        n = len(self.options)
        if self.selection is not None and len(self.selection.indices) != n:
            raise InputError(
                f"names {len(self.selection.indices)} candidates for {n} options",
                field="selection.indices",
                value=self.selection.indices,
            )
        for name in _CHOICE_FIELDS:
            value = getattr(self, name)
            if value is not None and not 0 <= value < n:
                valid = f"0..{n - 1}" if n else "none, there are no options"
                raise ChoiceError(
                    f"out of range for {n} option(s) (valid: {valid})", field=name, value=value
                )
        for name in _DISTRIBUTION_FIELDS:
            dist = getattr(self, name)
            if dist is None:
                continue
            if len(dist) != n:
                raise InputError(
                    f"has {len(dist)} probabilities for {n} options", field=name, value=dist
                )
            if any(p < 0 or not math.isfinite(p) for p in dist):
                raise InputError("probabilities must be finite and >= 0", field=name, value=dist)
        return self


class SessionEnd(_RecordBase):
    """The last record of a session. ``reason`` says why it ended (e.g. ``"completed"``,
    ``"user_quit"``, ``"error"``); any SessionEnd marks the session as done for resuming."""

    kind: Literal["session_end"] = "session_end"
    rounds: int = Field(ge=0)
    reason: str = "completed"


class EvalResult(SessionEnd):
    """The last record of one evaluation dialogue: one assistant with one (simulated or real)
    user, and everything the evaluation harness measured for it.

    It *is* a :class:`SessionEnd` (so :func:`~beliefagent.trajectories.completed_session_ids`
    counts the session as done, and :class:`~beliefagent.trajectories.TrajectoryWriter` accepts
    it), with its own ``kind``. A resumed evaluation skips every ``(assistant, user_id)`` that
    already has an ``EvalResult`` under the same ``run_key``.

    Shapes (``C`` checkpoints = rounds 0..R, ``S`` held-out queries, ``O`` options or answers):
    ``heldout_predictions (C, S)`` 0-based, ``None`` for an invalid answer;
    ``heldout_distributions (C, S, O)`` when the assistant scores its answers;
    ``dialogue_predictions`` / ``dialogue_shown (R,)``; ``probe`` maps each feature to the
    assistant's stated preference in [-1, 1].
    """

    kind: Literal["eval_result"] = "eval_result"  # type: ignore[assignment]
    run_key: str = ""
    suite: str = "heldout"
    domain: str = ""
    assistant: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    user_index: int = Field(ge=0)
    heldout_predictions: list[list[int | None]] = Field(default_factory=list)
    heldout_distributions: list[list[list[float]]] | None = None
    dialogue_predictions: list[int | None] = Field(default_factory=list)
    dialogue_shown: list[int | None] = Field(default_factory=list)
    dialogue_distributions: list[list[float]] | None = None
    probe: dict[str, float] | None = None
    n_queries: int = Field(default=0, ge=0)
    n_invalid: int = Field(default=0, ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    latency_s: float = Field(default=0.0, ge=0)
    extra: dict[str, JsonValue] = Field(default_factory=dict)


Record: TypeAlias = Annotated[
    SessionStart | Turn | SessionEnd | EvalResult, Field(discriminator="kind")
]
"""Any record of a trajectory log, told apart by its ``kind``."""

_RECORD_ADAPTER: TypeAdapter[SessionStart | Turn | SessionEnd | EvalResult] = TypeAdapter(Record)


def _describe(exc: ValidationError, limit: int = 3) -> str:
    """A one-line summary of a ValidationError for log reports."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(part) for part in err["loc"])
        if err["type"] == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            parts.append(f"unknown record kind {tag!r} (written by a newer beliefagent?)")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    extra = len(exc.errors()) - limit
    if extra > 0:
        parts.append(f"and {extra} more")
    return "; ".join(parts)


def parse_record(
    data: str | bytes | Mapping[str, Any], *, ignored: set[str] | None = None
) -> SessionStart | Turn | SessionEnd | EvalResult:
    """Parse one stored record (a JSON line, or an already-decoded mapping).

    Unknown fields (additions by a newer beliefagent) are dropped; their qualified names
    (``"Turn.new_field"``) are added to ``ignored`` when a set is given. Anything else that does
    not fit the schema raises :class:`~beliefagent.errors.DataError` with a one-line reason.
    """
    context: dict[str, Any] = {
        "lenient": True,
        "ignored": ignored if ignored is not None else set(),
    }
    try:
        if isinstance(data, str | bytes):
            return _RECORD_ADAPTER.validate_json(data, context=context)
        return _RECORD_ADAPTER.validate_python(dict(data), context=context)
    except ValidationError as exc:
        raise DataError(_describe(exc)) from exc
