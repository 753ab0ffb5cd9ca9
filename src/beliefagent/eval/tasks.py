"""What every assistant is evaluated on, and what the Bayesian teacher makes of it.

A task fixes the users, their rounds and choices, and the held-out queries, all seeded (or read
from the official files), so every assistant of a run sees exactly the same data:

- :class:`ChoiceTask` (flight, flight-K, hotel, or real people's dialogues): each user sees ``R``
  option sets and picks one; ``protocol="heldout"`` also asks ``S`` shared held-out sets after
  each round 0..R (the paper's protocol); ``protocol="dialogue"`` scores only the in-dialogue
  predictions (the real-people suite).
- :class:`QuestionnaireTask` (Big Five): each respondent answers ``K`` items (sampled from the
  GRM); after each ``k = 0..K`` answers the assistant predicts ``S`` shared held-out items,
  scored against the respondent's sampled answers.

:class:`UserTrace` is the Bayesian teacher's view of one user: its held-out predictions and
predictive distributions at every checkpoint, its in-dialogue predictions, the expected
information gain of every round, and its posterior mean weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from beliefagent.belief import ChoiceModel, NoiseFree, argmax_first, expected_information_gain
from beliefagent.belief.likelihood import TIE_TOL
from beliefagent.belief.posterior import log_normalize, predictive
from beliefagent.datasets import heldout_truth, load_heldout, load_interactions
from beliefagent.domains import ChoiceDomain, QuestionnaireDomain
from beliefagent.errors import ConfigError
from beliefagent.eval.teacher import generate_heldout, generate_interactions
from beliefagent.prompts import DialoguePrompts, Message
from beliefagent.teachers import sample_users

__all__ = [
    "ChoiceFormat",
    "ChoiceTask",
    "QuestionnaireFormat",
    "QuestionnaireTask",
    "UserTrace",
    "make_choice_task",
    "make_questionnaire_task",
    "teacher_traces",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_PREDICTIVE_LIMIT = 4_000_000  # hypotheses x sets x options per chunk of held-out predictive


@dataclass
class ChoiceTask:
    domain: ChoiceDomain
    protocol: str  # "heldout" | "dialogue"
    source: str  # "generated" | "official" | "file"
    user_ids: list[str]
    user_weights: FloatArray  # (U, F)
    rounds: IntArray  # (U, R, O, F) level indices
    choices: IntArray  # (U, R)
    heldout: IntArray  # (S, O, F); S = 0 for the dialogue protocol
    truth: IntArray  # (U, S)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_rounds(self) -> int:
        return int(self.choices.shape[1])

    @property
    def n_heldout(self) -> int:
        return int(self.heldout.shape[0])

    @property
    def n_labels(self) -> int:
        return self.domain.n_options


@dataclass
class QuestionnaireTask:
    domain: QuestionnaireDomain
    protocol: str  # "questionnaire"
    source: str
    user_ids: list[str]
    profiles: IntArray  # (U,) index into the domain's profiles
    items: IntArray  # (U, K) the items answered in the dialogue, in order
    answers: IntArray  # (U, K) 0-based answers (Likert value - 1)
    heldout: IntArray  # (S,) held-out item indices, shared by all users
    truth: IntArray  # (U, S) 0-based sampled answers to the held-out items

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_rounds(self) -> int:
        return int(self.items.shape[1])

    @property
    def n_heldout(self) -> int:
        return int(self.heldout.shape[0])

    @property
    def n_labels(self) -> int:
        return self.domain.n_answers


Task = ChoiceTask | QuestionnaireTask


def _subsample(n_total: int, users: int | None, rng: np.random.Generator) -> IntArray:
    if users is None or users >= n_total:
        return np.arange(n_total, dtype=np.int64)
    return np.sort(rng.choice(n_total, size=users, replace=False)).astype(np.int64)


def make_choice_task(
    domain: ChoiceDomain,
    *,
    protocol: str = "heldout",
    heldout: str | Path | None = None,
    interactions: str | Path | None = None,
    users: int | None = 20,
    heldout_sets: int = 20,
    seed: int = 0,
) -> ChoiceTask:
    """Users, rounds and held-out sets for a choice domain.

    Generated data follows :func:`~beliefagent.eval.teacher.run_teacher_eval` draw for draw
    (same seed, same users, same sets), so the ``bayes`` row equals ``teacher-eval``. With the
    official files, ``users`` (when smaller than the file) keeps a seeded subset of dialogues.
    """
    if protocol not in ("heldout", "dialogue"):
        raise ConfigError("must be 'heldout' or 'dialogue'", field="protocol", value=protocol)
    if users is not None and users < 1:
        raise ConfigError("must be >= 1", field="users", value=users)
    if protocol == "heldout" and heldout_sets < 1:
        raise ConfigError("must be >= 1", field="heldout_sets", value=heldout_sets)
    rng = np.random.default_rng(seed)
    if interactions is not None:
        inter = load_interactions(interactions, domain)
        keep = _subsample(len(inter.choices), users, rng)
        weights, rounds, choices = (
            inter.user_weights[keep],
            inter.rounds[keep],
            inter.choices[keep],
        )
        ids = [str(inter.ids[i]) for i in keep]
        source = "file"
        if protocol == "dialogue":
            sets = np.zeros((0, domain.n_options, domain.n_features), dtype=np.int64)
            truth = np.zeros((len(ids), 0), dtype=np.int64)
        elif heldout is not None:
            held = load_heldout(heldout, domain)
            all_truth = heldout_truth(held, inter.user_weights, source=str(interactions))
            sets, truth, source = held.option_sets, all_truth[keep], "official"
        else:
            gen = generate_heldout(domain, weights, heldout_sets, rng)
            sets, truth = gen.option_sets, gen.truth
    else:
        if heldout is not None:
            raise ConfigError(
                "--heldout needs --interactions (the dialogues to evaluate)",
                field="interactions",
                value=None,
            )
        inter = generate_interactions(domain, users, rng)
        weights, rounds, choices = inter.user_weights, inter.rounds, inter.choices
        ids = [str(i) for i in inter.ids]
        source = "generated"
        if protocol == "heldout":
            gen = generate_heldout(domain, weights, heldout_sets, rng)
            sets, truth = gen.option_sets, gen.truth
        else:
            sets = np.zeros((0, domain.n_options, domain.n_features), dtype=np.int64)
            truth = np.zeros((len(ids), 0), dtype=np.int64)
    return ChoiceTask(
        domain=domain,
        protocol=protocol,
        source=source,
        user_ids=ids,
        user_weights=weights,
        rounds=rounds,
        choices=choices,
        heldout=sets,
        truth=truth,
    )


def make_questionnaire_task(
    domain: QuestionnaireDomain,
    *,
    users: int | None = 20,
    heldout_items: int = 10,
    rounds: int = 10,
    seed: int = 0,
) -> QuestionnaireTask:
    """Respondents (distinct profiles), ``rounds`` dialogue items each (a seeded random order of
    the items not held out) and ``heldout_items`` shared held-out items; answers sampled from the
    GRM with each respondent's own seeded generator."""
    n_items = len(domain.items)
    if not 1 <= heldout_items < n_items:
        raise ConfigError(f"must be in 1..{n_items - 1}", field="heldout_sets", value=heldout_items)
    if not 1 <= rounds <= n_items - heldout_items:
        raise ConfigError(f"must be in 1..{n_items - heldout_items}", field="rounds", value=rounds)
    rng = np.random.default_rng(seed)
    profiles = sample_users(domain, users, rng)  # (U,)
    held = np.sort(rng.choice(n_items, size=heldout_items, replace=False)).astype(np.int64)
    rest = np.setdiff1d(np.arange(n_items), held)
    items = np.stack([rng.permutation(rest)[:rounds] for _ in profiles]).astype(np.int64)
    table = np.stack([domain.answer_probs(i) for i in range(n_items)])  # (I, H, A)

    def draw(p: FloatArray) -> IntArray:  # p (U, n, A) -> (U, n) sampled 0-based answers
        u = rng.random(p.shape[:-1])[..., None]
        return np.minimum((p.cumsum(-1) < u).sum(-1), p.shape[-1] - 1).astype(np.int64)

    answers = draw(table[items, profiles[:, None]])  # (U, K)
    truth = draw(table[held[None, :], profiles[:, None]])  # (U, S)
    return QuestionnaireTask(
        domain=domain,
        protocol="questionnaire",
        source="generated",
        user_ids=[str(int(p)) for p in profiles],
        profiles=profiles,
        items=items,
        answers=answers,
        heldout=held,
        truth=truth,
    )


@dataclass
class UserTrace:
    """The Bayesian teacher on one user. ``C = R + 1`` checkpoints."""

    heldout_pred: IntArray  # (C, S)
    heldout_dist: FloatArray | None  # (C, S, O); None when too large to compute
    dialogue_pred: IntArray  # (R,)
    dialogue_dist: FloatArray  # (R, O)
    info_gain: FloatArray  # (R,) expected information gain of each round, nats
    mean_weights: FloatArray  # (C, F) posterior mean weights
    emptied: bool = False


def _heldout_probs(task: ChoiceTask, lik: ChoiceModel) -> FloatArray | None:
    """``P(choice | h)`` for every held-out set, ``(H, S * O)``, shared by all users; ``None``
    when too large to hold (then no teacher predictive is computed for the held-out sets)."""
    domain = task.domain
    weights = domain.hypothesis_weights()  # (H, F)
    h, s, o = weights.shape[0], task.n_heldout, domain.n_options
    if h * s * o > _PREDICTIVE_LIMIT:
        return None
    xh = domain.codes(task.heldout)  # (S, O, F)
    util = np.einsum("hf,sof->hso", weights, xh)  # (H, S, O)
    return lik.probs(util).reshape(h, s * o)


def _choice_trace(
    task: ChoiceTask, u: int, lik: ChoiceModel, held_probs: FloatArray | None
) -> UserTrace:
    domain = task.domain
    weights = domain.hypothesis_weights()  # (H, F)
    h = weights.shape[0]
    x = domain.codes(task.rounds[u])  # (R, O, F)
    n_rounds = x.shape[0]
    log_post = np.full(h, -np.log(h))  # (H,)
    posts = np.empty((n_rounds + 1, h))  # (C, H)
    posts[0] = np.exp(log_post)
    d_pred = np.empty(n_rounds, dtype=np.int64)
    d_dist = np.empty((n_rounds, domain.n_options))
    gain = np.empty(n_rounds)
    emptied = False
    for r in range(n_rounds):
        probs = lik.probs(weights @ x[r].T)  # (H, O)
        post = posts[r]
        d_pred[r] = int(argmax_first((post @ weights) @ x[r].T))
        d_dist[r] = predictive(post, probs)
        gain[r] = float(expected_information_gain(post, probs))
        with np.errstate(divide="ignore"):
            new = log_normalize(log_post + np.log(probs[:, task.choices[u, r]]))
        if np.isfinite(new).any():
            log_post = new
        else:
            emptied = True
        posts[r + 1] = np.exp(log_post)
    means = posts @ weights  # (C, F)
    s = task.n_heldout
    xh = domain.codes(task.heldout)  # (S, O, F)
    scores = (means @ xh.reshape(-1, xh.shape[-1]).T).reshape(
        n_rounds + 1, s, domain.n_options
    )  # (C, S, O)
    h_pred = argmax_first(scores, axis=-1, tol=TIE_TOL).astype(np.int64)  # (C, S)
    h_dist = (
        None
        if held_probs is None
        else (posts @ held_probs).reshape(n_rounds + 1, s, domain.n_options)  # (C, S, O)
    )
    return UserTrace(h_pred, h_dist, d_pred, d_dist, gain, means, emptied)


def _questionnaire_trace(task: QuestionnaireTask, u: int) -> UserTrace:
    domain = task.domain
    table = np.stack([domain.answer_probs(i) for i in range(len(domain.items))])  # (I, H, A)
    h = table.shape[1]
    log_post = np.full(h, -np.log(h))
    n_rounds = task.n_rounds
    posts = np.empty((n_rounds + 1, h))  # (C, H)
    posts[0] = np.exp(log_post)
    d_dist = np.empty((n_rounds, domain.n_answers))
    gain = np.empty(n_rounds)
    for k in range(n_rounds):
        probs = table[task.items[u, k]]  # (H, A)
        d_dist[k] = predictive(posts[k], probs)
        gain[k] = float(expected_information_gain(posts[k], probs))
        log_post = log_normalize(log_post + np.log(probs[:, task.answers[u, k]]))
        posts[k + 1] = np.exp(log_post)
    h_dist = np.einsum("ch,sha->csa", posts, table[task.heldout])  # (C, S, A)
    return UserTrace(
        heldout_pred=np.argmax(h_dist, axis=-1).astype(np.int64),
        heldout_dist=h_dist,
        dialogue_pred=np.argmax(d_dist, axis=-1).astype(np.int64),
        dialogue_dist=d_dist,
        info_gain=gain,
        mean_weights=posts @ domain.hypothesis_weights(),
    )


def teacher_traces(task: Task, likelihood: ChoiceModel | None = None) -> list[UserTrace]:
    """The Bayesian teacher's :class:`UserTrace` for every user of ``task``."""
    if isinstance(task, QuestionnaireTask):
        return [_questionnaire_trace(task, u) for u in range(task.n_users)]
    lik = likelihood or NoiseFree()
    held = _heldout_probs(task, lik)
    return [_choice_trace(task, u, lik, held) for u in range(task.n_users)]


# ------------------------------------------------------------------------------ prompt formats


class ChoiceFormat:
    """The paper's dialogue format for a choice domain; a query is an option set ``(O, F)``."""

    def __init__(self, domain: ChoiceDomain, prompt_style: str = "paper") -> None:
        self.domain = domain
        self.prompts = DialoguePrompts.for_domain(domain, prompt_style)
        self.labels = [domain.label(i) for i in range(domain.n_options)]
        self.answer_prefix = self.prompts.prefix()

    def user_message(
        self,
        last: tuple[int | None, int] | None,
        query: IntArray,
        previous: IntArray | None = None,
    ) -> str:
        """The user's turn: the first message, or feedback on ``last = (shown, choice)`` then
        the question about ``query``. ``previous`` is the option set ``last`` answered (an echo
        style restates the chosen option)."""
        texts = self.prompts.render_options(self.domain, query)
        if last is None:
            return self.prompts.first_message(texts)
        return self.prompts.next_message(last[0], last[1], texts, previous=self._lines(previous))

    def _lines(self, option_set: IntArray | None) -> list[str] | None:
        if option_set is None or not self.prompts.echo:
            return None
        return self.prompts.render_options(self.domain, option_set)

    def answer_text(self, index: int | None) -> str:
        return self.prompts.answer_text(index) if index is not None else ""

    def parse(self, text: str) -> int | None:
        from beliefagent.middleware.parsing import parse_answer

        return parse_answer(text, self.domain.n_options, self.domain.item)

    def hint(self, dist: FloatArray, choice: int) -> str:
        """The ``hint`` policy's evidence sentence (the wording of the middleware session)."""
        item = self.domain.item
        probs = ", ".join(f"{item} {i + 1}: {100 * p:.0f}%" for i, p in enumerate(dist))
        return (
            f"(Evidence from a Bayesian model of my preferences, updated on my choices so far: "
            f"the chance that each option is my favourite is {probs}. It recommends "
            f"{item} {choice + 1}.)"
        )

    def probe_messages(
        self, last: tuple[int | None, int], previous: IntArray | None = None
    ) -> list[Message]:
        """One probing query per feature, after the feedback on the last round (``previous``:
        its option set)."""
        feedback = self.prompts.feedback(last[0], last[1], self._lines(previous))
        return [
            {
                "role": "user",
                "content": f"{feedback}\n\nOn a scale from 1 (strongly prefers lower) to 5 "
                f"(strongly prefers higher), how much do I prefer a higher {f.label}? "
                "Answer with a number from 1 to 5.",
            }
            for f in self.domain.features
        ]


_DIGIT = re.compile(r"\b([1-9])\b")


class QuestionnaireFormat:
    """A questionnaire as a dialogue: the assistant predicts each answer, the user then gives
    it. A query is an item index."""

    answer_prefix = "My prediction: "

    def __init__(self, domain: QuestionnaireDomain) -> None:
        self.domain = domain
        self.labels = [str(k + 1) for k in range(domain.n_answers)]

    def user_message(
        self, last: tuple[int | None, int] | None, query: int, previous: int | None = None
    ) -> str:
        question = self.domain.render_item(int(query))
        if last is None:
            return f"{self.domain.spec.prompts.intro}\n\n{question}"
        return f"My answer is {last[1] + 1}.\n\n{question}"

    def answer_text(self, index: int | None) -> str:
        return f"{self.answer_prefix}{index + 1}." if index is not None else ""

    def parse(self, text: str) -> int | None:
        found = {int(m) for m in _DIGIT.findall(text)}
        if len(found) != 1:
            return None
        value = found.pop()
        return value - 1 if 1 <= value <= self.domain.n_answers else None

    def hint(self, dist: FloatArray, choice: int) -> str:
        probs = ", ".join(f"{k + 1}: {100 * p:.0f}%" for k, p in enumerate(dist))
        return (
            f"(Evidence from a Bayesian model of my personality, updated on my answers so far: "
            f"the chance of each answer is {probs}. It predicts {choice + 1}.)"
        )

    def probe_messages(
        self, last: tuple[int | None, int], previous: int | None = None
    ) -> list[Message]:
        return []
