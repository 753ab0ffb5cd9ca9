"""A recommendation dialogue through any backend, with the exact belief kept beside it.

    session = Session(load_domain("flight"), backend, policy="guard", log="runs/log.jsonl")
    turn = session.recommend(option_set)     # the LLM's choice, the teacher's, the one shown
    session.observe(user_choice)             # updates the belief; writes the turn to the log
    session.close()

Each round the session renders the options in the paper's multi-turn format, asks the backend
(scoring the option labels when it can), parses the reply (a bounded re-ask when it cannot), asks
the Bayesian teacher, lets the policy pick what to show, and — once the user's real choice is
known — updates the belief and appends one crash-safe record to the trajectory log.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from beliefagent.adapters.base import Backend, GenerationSettings, Message, Reply
from beliefagent.belief import ChoiceModel, SelectionConfig
from beliefagent.domains import ChoiceDomain
from beliefagent.errors import BackendError, ChoiceError, ConfigError, OptionError
from beliefagent.middleware.parsing import parse_answer
from beliefagent.middleware.policies import Decision, check_policy, decide
from beliefagent.middleware.results import TurnResult, result_from_dict, result_to_dict
from beliefagent.middleware.selection import CandidatesInput, SelectedOptions, read_candidates
from beliefagent.prompts import DialoguePrompts
from beliefagent.teachers import BayesianTeacher
from beliefagent.trajectories import (
    BeliefSnapshot,
    OptionRecord,
    SessionEnd,
    SessionStart,
    TrajectoryWriter,
    Turn,
)
from beliefagent.trajectories import Decision as DecisionRecord
from beliefagent.trajectories import Message as MessageRecord

__all__ = ["REASK", "Session", "TurnResult", "result_from_dict", "result_to_dict"]

logger = logging.getLogger(__name__)

REASK = 'Please answer with exactly one option, in the form: "The best option is {item} N."'

OptionsInput = npt.ArrayLike | Sequence[str] | Sequence[Mapping[str, Any]]


def _distribution(scores: Mapping[str, float] | None, labels: Sequence[str]) -> list[float] | None:
    if not scores:
        return None
    logp = np.array([scores.get(lb, -math.inf) for lb in labels], dtype=np.float64)
    if not np.isfinite(logp).any():
        return None
    p = np.exp(logp - logp.max())
    return (p / p.sum()).tolist()


def _features(values: Mapping[str, str] | None) -> dict[str, float | int | str] | None:
    return None if values is None else dict(values)


_NO_DECISION = Decision(None, "none", "")


def _levels_list(levels: npt.NDArray[np.int64] | None) -> list[list[int]] | None:
    return None if levels is None else [[int(v) for v in row] for row in levels]


class Session:
    """One user's dialogue. ``domain=None`` runs free-form options with the belief marked
    unavailable (then ``prompts`` and ``n_options`` must be given)."""

    def __init__(
        self,
        domain: ChoiceDomain | None,
        backend: Backend | None = None,
        *,
        policy: str = "llm",
        likelihood: ChoiceModel | None = None,
        log: TrajectoryWriter | str | Path | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        settings: GenerationSettings | None = None,
        max_reasks: int = 1,
        guard_threshold: float = 0.8,
        tie_break: str = "first",
        seed: int | None = 0,
        prompts: DialoguePrompts | None = None,
        n_options: int | None = None,
        score_labels: bool = True,
        ask_llm: bool | None = None,
        meta: Mapping[str, Any] | None = None,
        selection: SelectionConfig | None = None,
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        self.policy = check_policy(policy, guard_threshold)
        if max_reasks < 0:
            raise ConfigError("must be >= 0", field="max_reasks", value=max_reasks)
        self.domain = domain
        self.backend = backend
        self.guard_threshold = guard_threshold
        self.max_reasks = max_reasks
        self.ask_llm = (policy != "bayes") if ask_llm is None else ask_llm
        if self.ask_llm and backend is None:
            raise ConfigError(f"policy {policy!r} needs a backend", field="backend", value=None)
        if domain is None:
            if prompts is None or n_options is None:
                raise ConfigError(
                    "without a domain, give prompts and n_options", field="domain", value=None
                )
            self.prompts, self.n_options = prompts, n_options
            self.teacher: BayesianTeacher | None = None
        else:
            # a tuned backend is asked in the prompt style it was trained on
            style = getattr(backend, "prompt_style", "paper")
            self.prompts = prompts or DialoguePrompts.for_domain(domain, style)
            self.n_options = domain.n_options
            self.teacher = BayesianTeacher(domain, likelihood, tie_break=tie_break, seed=seed)
        self.labels = [str(i + 1) for i in range(self.n_options)]
        base = settings or GenerationSettings(max_tokens=24)
        self.settings = base
        self.score_labels = score_labels
        self.session_id = session_id or uuid.uuid4().hex
        self.user_id = user_id
        self.messages: list[Message] = []
        self.round = 0
        self._pending: tuple[TurnResult, npt.NDArray[np.int64] | None, str] | None = None
        self._last: tuple[int | None, int] = (None, 0)  # (shown, user choice) of the last round
        self._last_texts: list[str] | None = None  # the option lines the LLM saw last round
        self._round_texts: list[str] | None = None  # ... and this round (pending)
        self._prompt: list[Message] = []
        self._played: list[tuple[npt.NDArray[np.int64] | None, int | None, int]] = []
        self._played_data: list[dict[str, Any]] = []  # _played as JSON-able data
        self._pending_data: dict[str, Any] | None = None
        self._owns_log = not isinstance(log, TrajectoryWriter) and log is not None
        self.log: TrajectoryWriter | None = (
            TrajectoryWriter(log) if isinstance(log, str | Path) else log
        )
        self.closed = False
        self.selection = selection or SelectionConfig()
        self._selected: SelectedOptions | None = None  # chosen by select(), not yet shown
        self._pending_selection: SelectedOptions | None = None  # shown in the pending round
        self._start = SessionStart(
            session_id=self.session_id,
            user_id=user_id,
            domain=self.domain_name,
            policy=self.policy,
            backend=getattr(backend, "name", None),
            model=getattr(backend, "model", None),
            adapter=getattr(backend, "adapter", None),
            settings={
                "max_reasks": max_reasks,
                "guard_threshold": guard_threshold,
                "likelihood": self.teacher.likelihood.name if self.teacher else None,
                "tie_break": tie_break,
                "max_tokens": base.max_tokens,
                "selection": {
                    "strategy": self.selection.strategy,
                    "margin": self.selection.margin,
                    "search": self.selection.search,
                },
            },
            meta=dict(meta or {}),
        )
        if resume is not None:
            self._resume(resume)
        elif self.log is not None:
            self.log.write(self._start)

    def attach_log(self, log: TrajectoryWriter) -> None:
        """Start logging to ``log`` now (writes the session_start record): for a session made
        without a log whose records should begin only once it proved usable (the server opens
        a session and plays its first round before anything is logged)."""
        if self.log is not None:
            raise ConfigError("the session already has a log", field="log", value=str(log))
        self.log = log
        log.write(self._start)

    @property
    def domain_name(self) -> str:
        return self.domain.name if self.domain is not None else "free-form"

    # --- options ------------------------------------------------------------------------------
    def _read_options(
        self, options: OptionsInput
    ) -> tuple[list[str], npt.NDArray[np.int64] | None]:
        items: list[Any] | None = None if isinstance(options, np.ndarray) else list(options)  # type: ignore[arg-type]
        if self.domain is None:
            if (
                items is None
                or len(items) != self.n_options
                or not all(isinstance(t, str) for t in items)
            ):
                raise OptionError(
                    f"expected {self.n_options} option texts", field="options", value=options
                )
            return [f"{self.prompts.item} {i + 1}: {t}" for i, t in enumerate(items)], None
        if items and all(isinstance(o, str) for o in items):
            levels = self.domain.parse_option_set([str(o) for o in items])
        elif items and all(isinstance(o, Mapping) for o in items):
            rows = [self.domain.option_from_values(o) for o in items]
            levels = self.domain.validate_option_set(np.array(rows, dtype=np.int64))
        else:
            levels = self.domain.validate_option_set(np.asarray(options))
        return self.domain.render_options(levels), levels

    def _prompt_texts(self, texts: list[str], levels: npt.NDArray[np.int64] | None) -> list[str]:
        """The option lines as the LLM sees them (the logged texts stay the domain's own)."""
        if levels is None or self.domain is None or self.prompts.style == "paper":
            return texts
        return self.prompts.render_options(self.domain, levels)

    def select(
        self, candidates: CandidatesInput, k: int | None = None, strategy: str | None = None
    ) -> SelectedOptions:
        """Choose the options to show from ``candidates`` (texts, ``{feature: value}`` or level
        indices; at least ``k``) by ``strategy`` (default: the session's ``selection`` config).
        Pass ``.levels`` to :meth:`recommend`; that round's log then records the candidates and
        the chosen positions."""
        if self.teacher is None or self.domain is None:
            raise ConfigError("selection needs a domain with a belief", field="domain", value=None)
        if k is not None and k != self.n_options:
            raise ConfigError(
                f"{self.domain.name} shows {self.n_options} options a round", field="k", value=k
            )
        config = self.selection
        if strategy is not None and strategy != config.strategy:
            config = SelectionConfig(
                strategy,
                margin=config.margin,
                search=config.search,
                exact_limit=config.exact_limit,
                n_seeds=config.n_seeds,
                seed_budget=config.seed_budget,
            )
        levels = read_candidates(self.domain, candidates)
        chosen = self.teacher.select(levels, None, config)
        picked = levels[chosen.indices]
        self._selected = SelectedOptions(
            indices=chosen.indices,
            levels=picked,
            options=self.domain.render_options(picked),
            selection=chosen,
            candidates=levels,
        )
        return self._selected

    # --- the LLM ------------------------------------------------------------------------------
    def _hint(self, result: TurnResult) -> str | None:
        if self.policy != "hint" or result.bayes_distribution is None:
            return None
        probs = ", ".join(
            f"{self.prompts.item} {i + 1}: {100 * p:.0f}%"
            for i, p in enumerate(result.bayes_distribution)
        )
        assert result.bayes_choice is not None
        return (
            f"(Evidence from a Bayesian model of my preferences, updated on my choices so far: "
            f"the chance that each option is my favourite is {probs}. It recommends "
            f"{self.prompts.item} {result.bayes_choice + 1}.)"
        )

    def _ask(self, prompt: list[Message], result: TurnResult) -> None:
        assert self.backend is not None
        settings = self.settings
        if self.score_labels:
            settings = GenerationSettings(
                max_tokens=settings.max_tokens,
                temperature=settings.temperature,
                seed=settings.seed,
                stop=settings.stop,
                timeout_s=settings.timeout_s,
                candidates=tuple(self.labels),
                answer_prefix=self.prompts.prefix(),
            )
        convo = list(prompt)
        for attempt in range(self.max_reasks + 1):
            try:
                reply: Reply = self.backend.complete(convo, settings)
            except BackendError as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")
                result.invalid = True  # no LLM answer: what is shown comes from the fallback
                result.llm_failed = True
                logger.warning(
                    "session %s round %d: backend failed: %s", self.session_id, self.round, exc
                )
                return
            result.raw_replies.append(reply.text)
            result.latency_s += reply.latency_s
            if reply.prompt_tokens is not None:
                result.prompt_tokens = (result.prompt_tokens or 0) + reply.prompt_tokens
            if reply.completion_tokens is not None:
                result.completion_tokens = (result.completion_tokens or 0) + reply.completion_tokens
            if attempt == 0:
                result.llm_distribution = _distribution(reply.candidate_logprobs, self.labels)
            choice = parse_answer(reply.text, self.n_options, self.prompts.item)
            if choice is not None:
                result.llm_choice = choice
                return
            if reply.finish_reason == "length":
                result.errors.append(f"reply truncated: {reply.text!r}")
            convo = [
                *convo,
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": REASK.format(item=self.prompts.item)},
            ]
        result.invalid = True

    # --- the dialogue -------------------------------------------------------------------------
    def recommend(self, options: OptionsInput) -> TurnResult:
        """Answer one round: which option does the user prefer?"""
        if self.closed:
            raise ConfigError("the session is closed", field="session", value=self.session_id)
        if self._pending is not None:
            raise ConfigError(
                "call observe(choice) before the next recommend()",
                field="session",
                value=self.session_id,
            )
        texts, levels = self._read_options(options)
        selected, self._selected = self._selected, None
        if selected is not None and (levels is None or not np.array_equal(levels, selected.levels)):
            selected = None  # the options shown are not the ones selected
        self._pending_selection = selected
        result = TurnResult(
            round=self.round, options=texts, shown_choice=None, decision=Decision(None, "none", "")
        )
        if self.teacher is not None and levels is not None:
            rec = self.teacher.recommend(levels)
            result.bayes_choice = rec.choice
            result.bayes_distribution = rec.predictive
            result.information_gain = rec.information_gain
            result.belief = self.teacher.summary()
        user_text, prompt = self._user_turn(self._prompt_texts(texts, levels), result)
        if self.ask_llm:
            self._ask(prompt, result)
        scored = (
            int(np.argmax(result.llm_distribution)) if result.llm_distribution is not None else None
        )
        confidence = (
            result.bayes_distribution[result.bayes_choice]
            if result.bayes_distribution is not None and result.bayes_choice is not None
            else None
        )
        result.decision = decide(
            self.policy,
            result.llm_choice,
            result.bayes_choice,
            confidence,
            llm_scored_choice=scored,
            threshold=self.guard_threshold,
            llm_failed=result.llm_failed,
        )
        result.shown_choice = result.decision.shown
        self._pending = (result, levels, user_text)
        self._pending_data = None
        self._prompt = prompt
        return result

    def _user_turn(self, texts: list[str], result: TurnResult) -> tuple[str, list[Message]]:
        """The user message of this round and the prompt sent to the backend."""
        if self.round == 0:
            user_text = self.prompts.first_message(texts)
        else:
            prev = self._last
            user_text = self.prompts.next_message(
                prev[0], prev[1], texts, previous=self._last_texts
            )
        self._round_texts = list(texts)
        hint = self._hint(result)
        prompt = [
            *self.messages,
            {"role": "user", "content": f"{user_text}\n\n{hint}" if hint else user_text},
        ]
        return user_text, prompt

    def observe(self, choice: int, *, user_message: str | None = None) -> Turn:
        """Record the user's real choice (0-based): update the belief, extend the chat history
        and append the turn to the log. Returns the logged record."""
        if self._pending is None:
            raise ConfigError(
                "call recommend(options) first", field="session", value=self.session_id
            )
        result, levels, user_text = self._pending
        if (
            isinstance(choice, bool)
            or not isinstance(choice, int | np.integer)
            or not (0 <= int(choice) < self.n_options)
        ):
            raise ChoiceError(
                f"must be an int in 0..{self.n_options - 1}", field="choice", value=choice
            )
        choice = int(choice)
        if self.teacher is not None and levels is not None:
            self.teacher.observe(levels, choice)
        shown = result.shown_choice
        self.messages.append({"role": "user", "content": user_text})
        self.messages.append(
            {
                "role": "assistant",
                "content": self.prompts.answer_text(shown) if shown is not None else "",
            }
        )
        self._last = (shown, choice)
        self._last_texts = self._round_texts
        self._played.append((levels, shown, choice))
        self._played_data.append({"levels": _levels_list(levels), "shown": shown, "choice": choice})
        self._pending_data = None
        record = self._turn_record(result, levels, choice, user_message)
        if self.log is not None:
            self.log.write(record)
        self._pending = None
        self.round += 1
        return record

    def _turn_record(
        self,
        result: TurnResult,
        levels: npt.NDArray[np.int64] | None,
        choice: int,
        user_message: str | None,
    ) -> Turn:
        options = [
            OptionRecord(
                text=t,
                features=_features(
                    self.domain.feature_values(levels[i])
                    if self.domain is not None and levels is not None
                    else None
                ),
            )
            for i, t in enumerate(result.options)
        ]
        snap = None
        if result.belief is not None:
            b = result.belief
            snap = BeliefSnapshot(
                entropy=b.entropy,
                n_hypotheses=b.n_hypotheses,
                map_index=b.map_index,
                marginals=b.marginals,
                emptied=b.emptied,
                available=True,
            )
        elif self.domain is None:
            snap = BeliefSnapshot(entropy=0.0, n_hypotheses=0, available=False)
        backend = self.backend if self.ask_llm else None
        chosen = self._pending_selection
        return Turn(
            session_id=self.session_id,
            user_id=self.user_id,
            domain=self.domain_name,
            round=result.round,
            options=options,
            prompt=[MessageRecord(role=m["role"], content=m["content"]) for m in self._prompt],
            raw_replies=result.raw_replies,
            llm_choice=result.llm_choice,
            llm_distribution=result.llm_distribution,
            bayes_choice=result.bayes_choice,
            bayes_distribution=result.bayes_distribution,
            shown_choice=result.shown_choice,
            decision=DecisionRecord(
                policy=self.policy, source=result.decision.source, reason=result.decision.reason
            ),
            user_choice=choice,
            belief=snap,
            backend=getattr(backend, "name", None),
            model=getattr(backend, "model", None),
            adapter=getattr(backend, "adapter", None),
            latency_s=result.latency_s if result.raw_replies else None,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            errors=result.errors,
            invalid=result.invalid,
            user_message=user_message,
            selection=chosen.record(self.domain)
            if chosen is not None and self.domain is not None
            else None,
        )

    # --- resuming -----------------------------------------------------------------------------
    @property
    def pending(self) -> TurnResult | None:
        """The answered round that awaits the user's choice, if any."""
        return self._pending[0] if self._pending is not None else None

    @property
    def pending_levels(self) -> npt.NDArray[np.int64] | None:
        """The option levels of the pending round, if any."""
        return self._pending[1] if self._pending is not None else None

    def checkpoint(self) -> dict[str, Any]:
        """The dialogue's state as JSON-able data: every played round (option levels, the
        option shown, the user's choice) and the pending round. ``Session(..., resume=...)``
        rebuilds the same session from it: the belief by replaying the choices through the
        teacher (exactly: the same updates in the same order), the chat history by rendering
        the same messages again."""
        if self.domain is None:
            raise ConfigError(
                "only sessions on a choice domain can be checkpointed", field="domain", value=None
            )
        if self._pending is not None and self._pending_data is None:
            result, levels, _ = self._pending
            self._pending_data = {"levels": _levels_list(levels), "result": result_to_dict(result)}
        return {"rounds": list(self._played_data), "pending": self._pending_data}

    def replay(self, levels: npt.ArrayLike, shown: int | None, choice: int) -> None:
        """Apply a round played earlier (its options, the option shown, the user's choice)
        without asking the backend or writing the log: what resuming a session does."""
        if self.domain is None or self.teacher is None:
            raise ConfigError("replay needs a choice domain", field="domain", value=None)
        if self._pending is not None:
            raise ConfigError(
                "a round awaits its choice; replay only played rounds",
                field="session",
                value=self.session_id,
            )
        lv = self.domain.validate_option_set(levels)
        texts = self.domain.render_options(lv)
        user_text, _ = self._user_turn(
            self._prompt_texts(texts, lv), TurnResult(self.round, texts, shown, _NO_DECISION)
        )
        self.teacher.observe(lv, int(choice))
        self.messages.append({"role": "user", "content": user_text})
        answer = self.prompts.answer_text(shown) if shown is not None else ""
        self.messages.append({"role": "assistant", "content": answer})
        self._last = (shown, int(choice))
        self._last_texts = self._round_texts
        self._played.append((lv, shown, int(choice)))
        self._played_data.append(
            {"levels": _levels_list(lv), "shown": shown, "choice": int(choice)}
        )
        self.round += 1

    def restore_pending(self, levels: npt.ArrayLike, result: TurnResult) -> None:
        """Reinstate a round that was answered (``result``) and awaits the user's choice."""
        if self.domain is None:
            raise ConfigError("restore needs a choice domain", field="domain", value=None)
        if result.round != self.round:
            raise ConfigError(
                f"the pending round must be round {self.round}", field="round", value=result.round
            )
        lv = self.domain.validate_option_set(levels)
        user_text, prompt = self._user_turn(self._prompt_texts(result.options, lv), result)
        self._pending = (result, lv, user_text)
        self._pending_data = None
        self._prompt = prompt

    def _resume(self, state: Mapping[str, Any]) -> None:
        for played in state.get("rounds", []):
            self.replay(np.asarray(played["levels"], dtype=np.int64), played["shown"],
                        played["choice"])  # fmt: skip
        pending = state.get("pending")
        if pending is not None:
            self.restore_pending(
                np.asarray(pending["levels"], dtype=np.int64), result_from_dict(pending["result"])
            )

    def close(self, reason: str = "completed") -> None:
        if self.closed:
            return
        self.closed = True
        if self.log is not None:
            self.log.write(SessionEnd(session_id=self.session_id, rounds=self.round, reason=reason))
            if self._owns_log:
                self.log.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close("completed" if exc_type is None else "error")
