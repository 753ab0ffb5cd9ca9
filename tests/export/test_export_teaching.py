"""build_examples: the pure core (no logs)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from beliefagent.belief import EpsilonGreedy, NoiseFree, Softmax
from beliefagent.errors import ChoiceError, ConfigError, InputError, OptionError
from beliefagent.export import (
    Scrubber,
    SkipReason,
    Target,
    TeachingSession,
    build_examples,
    likelihood_from_spec,
    session_seed,
)
from beliefagent.teachers import BayesianTeacher

from .builders import FLIGHT, simulated_sessions

ANSWER = re.compile(r"^The best option is Flight (\d)\.$")
FEEDBACK = re.compile(
    r"^Your option Flight (\d) is (?:correct\.|incorrect\. I prefer Flight (\d)\.)\n\n"
)


def _parse_chat(messages: list[dict[str, str]]) -> tuple[list[int], list[np.ndarray]]:
    """Assistant answers (0-based) and the option sets shown, read back from the chat text."""
    answers = [int(ANSWER.match(m["content"]).group(1)) - 1 for m in messages[1::2]]  # type: ignore[union-attr]
    sets = [
        FLIGHT.parse_option_set(m["content"].split("\n\n")[-1].split("\n")) for m in messages[::2]
    ]
    return answers, sets


def _rerun_teacher(session: TeachingSession, likelihood=None, seed: int = 0) -> list[int]:
    teacher = BayesianTeacher(
        FLIGHT, likelihood, tie_break="random", seed=session_seed(seed, session.session_id)
    )
    out = []
    for option_set, choice in zip(session.option_sets, session.user_choices, strict=True):
        out.append(teacher.recommend(option_set).choice)
        teacher.observe(option_set, choice)
    return out


SESSIONS = simulated_sessions(40, seed=3)


def test_bayes_targets_are_the_rerun_teachers_and_the_chat_reads_back() -> None:
    examples, skipped = build_examples(FLIGHT, SESSIONS, "bayes")
    assert skipped == [] and len(examples) == len(SESSIONS)
    wrong_guesses = 0
    for ex, s in zip(examples, SESSIONS, strict=True):
        assert ex.id == s.session_id and ex.user_id == s.user_id and ex.domain == "flight"
        assert ex.targets == _rerun_teacher(s)
        assert ex.soft_targets is None and ex.labels == ["1", "2", "3"]
        assert ex.user_choices == list(s.user_choices)
        answers, sets = _parse_chat(ex.messages)
        assert answers == ex.targets
        assert np.array_equal(np.stack(sets), s.option_sets)
        assert [m["role"] for m in ex.messages] == ["user", "assistant"] * 5
        # Feedback in user turn r+1 refers to the target shown in round r.
        for r, user in enumerate(ex.messages[2::2]):
            m = FEEDBACK.match(user["content"])
            assert m is not None and int(m.group(1)) - 1 == ex.targets[r]
            preferred = m.group(2)
            if ex.targets[r] == s.user_choices[r]:
                assert preferred is None
            else:
                assert int(preferred) - 1 == s.user_choices[r]
        wrong_guesses += sum(t != c for t, c in zip(ex.targets, s.user_choices, strict=True))
    # Bayesian teaching keeps the teacher's wrong early guesses.
    assert wrong_guesses > 0
    # Round 1 ties everywhere: random tie-breaks, not always "Flight 1".
    assert len({ex.targets[0] for ex in examples}) == 3


def test_bayes_soft_targets_are_distributions_with_argmax_hard_targets() -> None:
    examples, _ = build_examples(FLIGHT, SESSIONS, Target.BAYES_SOFT)
    for ex, s in zip(examples, SESSIONS, strict=True):
        assert ex.soft_targets is not None and len(ex.soft_targets) == 5
        teacher = BayesianTeacher(FLIGHT)
        for r, probs in enumerate(ex.soft_targets):
            assert len(probs) == 3 and sum(probs) == pytest.approx(1.0, abs=1e-9)
            assert probs == pytest.approx(teacher.recommend(s.option_sets[r]).predictive)
            assert probs[ex.targets[r]] >= max(probs) - 1e-9
            teacher.observe(s.option_sets[r], s.user_choices[r])


def test_oracle_targets_are_the_user_choices() -> None:
    examples, _ = build_examples(FLIGHT, SESSIONS[:5], "oracle")
    for ex, s in zip(examples, SESSIONS, strict=False):
        assert ex.targets == list(s.user_choices) and ex.soft_targets is None
        assert all("is correct." in m["content"] for m in ex.messages[2::2])


def test_plain_tuples_deterministic_and_order_independent() -> None:
    tuples = [(s.session_id, s.user_id, s.option_sets, s.user_choices) for s in SESSIONS[:10]]
    a, _ = build_examples(FLIGHT, tuples, "bayes", seed=7)
    b, _ = build_examples(FLIGHT, list(reversed(tuples)), "bayes", seed=7)
    assert [e.to_chat() for e in a] == [e.to_chat() for e in reversed(b)]
    c, _ = build_examples(FLIGHT, tuples, "bayes", seed=8)
    assert [e.targets for e in a] != [e.targets for e in c]  # the seed matters (ties)


def _contradicting_session() -> TeachingSession:
    """A session with random choices whose noise-free belief empties (found by search)."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        sets = FLIGHT.random_option_sets(rng, 5)  # (5, 3, 4)
        choices = rng.integers(0, 3, size=5).tolist()
        t = BayesianTeacher(FLIGHT)
        for option_set, choice in zip(sets, choices, strict=True):
            t.observe(option_set, choice)
        if t.belief.emptied:
            return TeachingSession("bad", "u-bad", sets, choices)
    raise AssertionError("no contradicting session found")


def test_emptied_sessions_are_skipped_or_kept_with_a_flag() -> None:
    bad = _contradicting_session()
    good = SESSIONS[0]
    examples, skipped = build_examples(FLIGHT, [good, bad], "bayes")
    assert [e.id for e in examples] == [good.session_id]
    assert [(s.session_id, s.reason) for s in skipped] == [("bad", SkipReason.BELIEF_EMPTIED)]
    # The check is the same for every target, so exports of one log hold the same sessions.
    examples, skipped = build_examples(FLIGHT, [good, bad], "oracle")
    assert len(examples) == 1 and skipped[0].reason is SkipReason.BELIEF_EMPTIED
    kept, skipped = build_examples(FLIGHT, [good, bad], "bayes", keep_emptied=True)
    assert [e.emptied for e in kept] == [False, True] and skipped == []
    noisy, skipped = build_examples(FLIGHT, [bad], "bayes", likelihood="epsilon:0.1")
    assert len(noisy) == 1 and not noisy[0].emptied and skipped == []


def test_no_rounds_is_skipped_and_malformed_sessions_raise() -> None:
    _, skipped = build_examples(FLIGHT, [("empty", None, np.zeros((0, 3, 4), int), [])], "bayes")
    assert skipped[0].reason is SkipReason.NO_USER_CHOICES
    s = SESSIONS[0]
    with pytest.raises(OptionError, match="shape"):
        build_examples(FLIGHT, [("x", None, s.option_sets[:, :2], s.user_choices)], "bayes")
    with pytest.raises(ChoiceError):
        build_examples(FLIGHT, [("x", None, s.option_sets, [0, 1, 2, 3, 0])], "bayes")
    with pytest.raises(InputError, match="choices"):
        build_examples(FLIGHT, [("x", None, s.option_sets, [0, 1])], "bayes")
    off = np.array(s.option_sets)
    off[1, 2, 3] = 11
    with pytest.raises(OptionError, match="price"):
        build_examples(FLIGHT, [("x", None, off, s.user_choices)], "bayes")
    with pytest.raises(ConfigError, match="target"):
        build_examples(FLIGHT, [s], "teacher")


def test_user_messages_are_scrubbed_and_prepended_when_asked() -> None:
    s = SESSIONS[0]._replace(user_messages=["hi, I'm ann@example.org", None, "", "cheap!", None])
    plain, _ = build_examples(FLIGHT, [s], "bayes")
    assert "ann@example.org" not in str(plain[0].messages) and "cheap" not in str(plain)
    scrubber = Scrubber()
    ex, _ = build_examples(FLIGHT, [s], "bayes", include_user_messages=True, scrubber=scrubber)
    users = ex[0].messages[::2]
    assert users[0]["content"].startswith("hi, I'm [EMAIL]\n\nHelp me select")
    assert users[3]["content"].startswith("cheap!\n\nYour option Flight")
    assert users[1]["content"] == plain[0].messages[2]["content"]
    assert scrubber.counts["email"] == 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, NoiseFree()),
        ("noise-free", NoiseFree()),
        ("epsilon:0.2", EpsilonGreedy(0.2)),
        ("softmax:0.3", Softmax(0.3)),
        ("softmax", Softmax(0.1)),
    ],
)
def test_likelihood_specs(spec: str | None, expected: object) -> None:
    assert likelihood_from_spec(spec) == expected


@pytest.mark.parametrize("spec", ["epsilon:x", "gaussian", "epsilon:2"])
def test_bad_likelihood_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        likelihood_from_spec(spec)
