"""Teaching examples from dialogues: re-run the Bayesian teacher over a session's rounds and write
its answers as the assistant turns of the paper's multi-turn chat ("Bayesian teaching").

The pure core, usable without logs, is :func:`build_examples`: give it a domain and sessions
``(session_id, user_id, option_sets (R, O, F) level indices, user_choices (R,))`` and it returns
one :class:`TeachingExample` per session, plus a :class:`Skip` for each session it cannot use.

Targets (one per assistant turn, i.e. per round):

- ``bayes`` — the teacher's recommendation before it sees the round's choice: the argmax of the
  posterior expected reward, its early wrong guesses included (the paper's Bayesian teaching).
  Ties are broken at random, seeded per session (:func:`session_seed`); otherwise every round-1
  target would be "option 1".
- ``bayes-soft`` — the teacher's predictive distribution ``P(user picks o)`` per round, written
  as ``soft_targets``; the hard target is its argmax, ties broken at random (seeded).
- ``oracle`` — the user's actual choice.

The model's own logged answers are never a target. The user turns' feedback refers to the target
answer shown ("Your option Flight 2 is incorrect. I prefer Flight 3."), built with
:func:`~beliefagent.prompts.build_dialogue`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from beliefagent.belief import ChoiceModel
from beliefagent.belief.likelihood import choice_model_from_spec as likelihood_from_spec
from beliefagent.domains import ChoiceDomain
from beliefagent.errors import ChoiceError, ConfigError, InputError, OptionError
from beliefagent.export.scrub import Scrubber
from beliefagent.prompts import DialoguePrompts, Message, build_dialogue
from beliefagent.teachers import BayesianTeacher

__all__ = [
    "MAX_SKIP_DETAILS",
    "Format",
    "Skip",
    "SkipReason",
    "Target",
    "TeachingExample",
    "TeachingSession",
    "build_examples",
    "likelihood_from_spec",
    "session_seed",
]

IntArray = npt.NDArray[np.int64]

MAX_SKIP_DETAILS = 1000
"""At most this many skipped sessions are listed one by one in the manifest (all are counted)."""


class Target(StrEnum):
    """What the assistant turns of an exported chat say."""

    BAYES = "bayes"
    BAYES_SOFT = "bayes-soft"
    ORACLE = "oracle"


class Format(StrEnum):
    """How examples are written: ``chat`` (every field) or ``openai`` (``messages`` only)."""

    CHAT = "chat"
    OPENAI = "openai"


class SkipReason(StrEnum):
    """Why a session (or a log line) did not become an example."""

    UNKNOWN_DOMAIN = "unknown_domain"
    """the session's domain is neither built in nor a readable spec"""
    NO_TEACHER = "no_teacher"
    """the domain has no Bayesian choice teacher (e.g. a questionnaire such as bigfive)"""
    OTHER_DOMAIN = "other_domain"
    """a domain was given and the session was logged under another one"""
    MIXED_DOMAINS = "mixed_domains"
    """the session's turns name different domains"""
    NO_USER_CHOICES = "no_user_choices"
    """no round with a user choice (a session that ended before the user chose)"""
    OPTIONS_UNPARSABLE = "options_unparsable"
    """options that neither their features nor their text map onto the domain's grid"""
    BELIEF_EMPTIED = "belief_emptied"
    """the user's choices contradicted every hypothesis (noise-free likelihood)"""
    TORN_LINE = "torn_line"
    """a log line cut short by a crash"""
    INVALID_LINE = "invalid_line"
    """a log line that is not a valid record"""


class TeachingSession(NamedTuple):
    """One dialogue's history: what the teacher is re-run over. A plain 4-tuple
    ``(session_id, user_id, option_sets, user_choices)`` works wherever this is expected."""

    session_id: str
    user_id: str | None
    option_sets: npt.ArrayLike
    """level indices, ``(R, n_options, n_features)``"""
    user_choices: Sequence[int]
    """the user's choice (0-based) in each round, ``(R,)``"""
    user_messages: Sequence[str | None] | None = None
    """free text the user wrote with each round's question (production logs), or None"""


@dataclass(frozen=True)
class Skip:
    """A session, or a log line, left out of the teaching set."""

    session_id: str | None
    reason: SkipReason
    detail: str = ""
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "reason": str(self.reason),
            "detail": self.detail,
            "source": self.source,
        }


@dataclass(frozen=True)
class TeachingExample:
    """One exported chat and its targets (one per assistant turn)."""

    id: str
    user_id: str | None
    domain: str
    target: Target
    messages: list[Message]
    targets: list[int]
    """0-based option index of each assistant turn's answer"""
    soft_targets: list[list[float]] | None
    """per assistant turn, P(user picks each option) (``bayes-soft`` only)"""
    labels: list[str]
    """each option's label as written in the chat ("1", "2", "3")"""
    user_choices: list[int]
    emptied: bool = False
    """the teacher's belief emptied (only with ``keep_emptied``; otherwise such are skipped)"""
    prompt_style: str = "paper"
    """the rendering of the chat (:data:`beliefagent.prompts.PROMPT_STYLES`)"""
    answer_prefix: str | None = None
    """where the label starts in an answer, when not the paper's "The best option is " """

    def to_chat(self) -> dict[str, Any]:
        """The ``chat`` line: the paper's data release / TRL ``messages`` format plus fields."""
        extra: dict[str, Any] = {}
        if self.prompt_style != "paper":
            extra["prompt_style"] = self.prompt_style
        if self.answer_prefix is not None:
            extra["answer_prefix"] = self.answer_prefix
        return {
            "id": self.id,
            "user_id": self.user_id,
            "domain": self.domain,
            "target": str(self.target),
            "messages": self.messages,
            "targets": self.targets,
            "soft_targets": self.soft_targets,
            "labels": self.labels,
            "user_choices": self.user_choices,
            "emptied": self.emptied,
            **extra,
        }

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI fine-tuning line: ``{"messages": [...]}`` only (soft targets cannot ride)."""
        return {"messages": self.messages}


def session_seed(seed: int, session_id: str) -> int:
    """The tie-breaking seed of one session: a hash of the export seed and the session id, so a
    session's targets do not depend on which other sessions are exported with it."""
    digest = hashlib.sha256(f"{seed}\x00{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _likelihood_settings(model: ChoiceModel) -> dict[str, Any]:
    param = getattr(model, "epsilon", getattr(model, "temperature", None))
    spec = model.name if param is None else f"{model.name}:{param:g}"
    return {"likelihood": spec, "model": repr(model)}


def _argmax_random(values: Sequence[float], rng: np.random.Generator, tol: float = 1e-9) -> int:
    v = np.asarray(values, dtype=np.float64)  # (n_options,)
    best = np.flatnonzero(v >= v.max() - tol)
    return int(rng.choice(best))


def _check_target(target: str | Target) -> Target:
    try:
        return Target(target)
    except ValueError as exc:
        raise ConfigError(
            f"unknown target (one of {', '.join(t.value for t in Target)})",
            field="target",
            value=target,
        ) from exc


def _check_session(domain: ChoiceDomain, session: TeachingSession) -> tuple[IntArray, list[int]]:
    """The session's option sets ``(R, O, F)`` and choices ``(R,)``, checked against the domain."""
    sid = session.session_id
    sets = np.asarray(session.option_sets)
    if sets.ndim != 3 or sets.shape[1:] != (domain.n_options, domain.n_features):
        raise OptionError(
            f"session {sid!r}: expected option_sets of shape "
            f"(rounds, {domain.n_options}, {domain.n_features})",
            field="option_sets",
            value=sets.shape,
        )
    if not np.issubdtype(sets.dtype, np.integer):
        raise OptionError(
            f"session {sid!r}: option levels must be integers",
            field="option_sets",
            value=sets.dtype,
        )
    off = (sets < 0) | (sets >= np.asarray(domain.n_levels))  # (R, O, F)
    if off.any():
        r, o, f = (int(i) for i in np.argwhere(off)[0])
        raise OptionError(
            f"session {sid!r}: round {r}, option {o}: level off the grid "
            f"(0..{domain.n_levels[f] - 1})",
            field=f"option_sets.{domain.feature_names[f]}",
            value=int(sets[r, o, f]),
        )
    choices = [int(c) for c in session.user_choices]
    if len(choices) != len(sets):
        raise InputError(
            f"session {sid!r}: {len(sets)} option sets but {len(choices)} choices",
            field="user_choices",
            value=choices,
        )
    for c in choices:
        if not 0 <= c < domain.n_options:
            raise ChoiceError(
                f"session {sid!r}: choice out of range 0..{domain.n_options - 1}",
                field="user_choices",
                value=c,
            )
    return sets.astype(np.int64), choices


def build_examples(
    domain: ChoiceDomain,
    sessions: Iterable[TeachingSession | tuple[Any, ...]],
    target: str | Target,
    *,
    likelihood: str | ChoiceModel | None = None,
    seed: int = 0,
    keep_emptied: bool = False,
    include_user_messages: bool = False,
    scrubber: Scrubber | None = None,
    prompts: DialoguePrompts | None = None,
) -> tuple[list[TeachingExample], list[Skip]]:
    """One teaching example per session, the Bayesian teacher re-run over its history.

    ``sessions`` are :class:`TeachingSession`\\ s or plain tuples ``(session_id, user_id,
    option_sets (R, O, F), user_choices (R,))``. For every ``target`` the teacher (``likelihood``:
    a model or a spec such as ``"epsilon:0.1"``; noise-free by default) observes every choice;
    a session whose belief emptied is skipped (:attr:`SkipReason.BELIEF_EMPTIED`) unless
    ``keep_emptied``, even for ``oracle`` targets, so that exports of the same sessions with
    different targets hold the same sessions. A session with no rounds is skipped too. Malformed
    sessions (shapes, off-grid levels, choices out of range) raise
    :class:`~beliefagent.errors.InputError`.

    With ``include_user_messages``, each round's user message (scrubbed with ``scrubber``, of
    personal data and credentials) is prepended to that round's user turn. Returns
    ``(examples, skipped)``, examples in the order of ``sessions``.
    """
    tgt = _check_target(target)
    lik = likelihood_from_spec(likelihood)
    wording = prompts or DialoguePrompts.for_domain(domain)
    scrub = scrubber if scrubber is not None else Scrubber()
    labels = [domain.label(i) for i in range(domain.n_options)]
    examples: list[TeachingExample] = []
    skipped: list[Skip] = []
    for raw in sessions:
        session = raw if isinstance(raw, TeachingSession) else TeachingSession(*raw)
        if len(session.user_choices) == 0:
            skipped.append(Skip(session.session_id, SkipReason.NO_USER_CHOICES, "no rounds"))
            continue
        sets, choices = _check_session(domain, session)  # (R, O, F), (R,)
        sseed = session_seed(seed, session.session_id)
        teacher = BayesianTeacher(domain, lik, tie_break="random", seed=sseed)
        rng = np.random.default_rng([sseed, 1])  # ties of the predictive (bayes-soft)
        targets: list[int] = []
        soft: list[list[float]] = []
        for option_set, choice in zip(sets, choices, strict=True):
            if tgt is Target.BAYES:
                targets.append(teacher.recommend(option_set).choice)
            elif tgt is Target.BAYES_SOFT:
                predictive = teacher.recommend(option_set).predictive
                soft.append(predictive)
                targets.append(_argmax_random(predictive, rng))
            else:
                targets.append(choice)
            teacher.observe(option_set, choice)
        emptied = teacher.belief.emptied
        if emptied and not keep_emptied:
            skipped.append(
                Skip(
                    session.session_id,
                    SkipReason.BELIEF_EMPTIED,
                    f"{teacher.belief.n_contradictions} contradicted choice(s) under {lik.name}",
                )
            )
            continue
        option_texts = [wording.render_options(domain, s) for s in sets]
        messages = build_dialogue(wording, option_texts, answers=targets, choices=choices)
        if include_user_messages and session.user_messages is not None:
            for r, text in enumerate(session.user_messages[: len(choices)]):
                if text and text.strip():
                    turn = messages[2 * r]  # user turns sit at even positions
                    turn["content"] = f"{scrub.scrub(text.strip())}\n\n{turn['content']}"
        examples.append(
            TeachingExample(
                id=session.session_id,
                user_id=session.user_id,
                domain=domain.name,
                target=tgt,
                messages=messages,
                targets=targets,
                soft_targets=soft if tgt is Target.BAYES_SOFT else None,
                labels=list(labels),
                user_choices=choices,
                emptied=emptied,
                prompt_style=wording.style,
                answer_prefix=None if wording.style == "paper" else wording.prefix(),
            )
        )
    return examples, skipped
