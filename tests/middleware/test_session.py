from __future__ import annotations

import math

import numpy as np
import pytest

from beliefagent.adapters import Reply, ScriptedBackend
from beliefagent.domains import load_domain
from beliefagent.errors import BackendError, ChoiceError, ConfigError, OptionError
from beliefagent.middleware import Session
from beliefagent.middleware.runner import run_dialogue
from beliefagent.prompts import DialoguePrompts
from beliefagent.teachers import BayesianTeacher, SimulatedUser
from beliefagent.trajectories import read_trajectories

FLIGHT = load_domain("flight")


def _sets(seed: int = 0, n: int = 5) -> np.ndarray:
    return FLIGHT.random_option_sets(np.random.default_rng(seed), n)


def test_five_round_dialogue_is_logged(tmp_path) -> None:
    backend = ScriptedBackend.from_replies(["The best option is Flight 2."])
    log = tmp_path / "log.jsonl"
    user = SimulatedUser(FLIGHT, FLIGHT.hypothesis_weights()[42], seed=0)
    sets = _sets()
    session = Session(FLIGHT, backend, policy="llm", log=log, user_id="u42")
    results = run_dialogue(session, user, sets)
    assert [r.llm_choice for r in results] == [1] * 5
    assert all(r.shown_choice == 1 and r.decision.source == "llm" for r in results)

    read = read_trajectories(log)
    kinds = [r.kind for r in read.records]
    assert kinds == ["session_start"] + ["turn"] * 5 + ["session_end"]
    turns = read.records[1:6]
    assert [t.round for t in turns] == list(range(5))
    assert all(t.user_id == "u42" and t.belief is not None for t in turns)
    assert turns[0].belief.entropy == pytest.approx(math.log(624))
    assert turns[4].belief.entropy < turns[0].belief.entropy
    assert turns[1].options[0].features is not None
    # the belief beside the LLM equals a teacher fed the same choices
    teacher = BayesianTeacher(FLIGHT)
    for r, s, t in zip(results, sets, turns, strict=True):
        rec = teacher.recommend(s)
        assert r.bayes_choice == rec.choice == t.bayes_choice
        assert t.bayes_distribution == pytest.approx(rec.predictive)
        teacher.observe(s, t.user_choice)
    # the paper's multi-turn format: feedback on the shown answer opens the next user turn
    second_prompt = backend.calls[1][0]
    assert second_prompt[1] == {"role": "assistant", "content": "The best option is Flight 2."}
    assert second_prompt[2]["content"].startswith("Your option Flight 2 is")
    assert "Which flight is the best option?" in second_prompt[2]["content"]


def test_scored_distribution_and_guard() -> None:
    # the LLM always says Flight 3 but scores it; the guard overrides it once confident
    def reply(_messages):
        return Reply(
            text="Flight 3",
            model="m",
            candidate_logprobs={"1": math.log(0.2), "2": math.log(0.3), "3": math.log(0.5)},
        )

    backend = ScriptedBackend(reply)
    session = Session(FLIGHT, backend, policy="guard", guard_threshold=0.6)
    user = SimulatedUser(FLIGHT, FLIGHT.hypothesis_weights()[600], seed=0)
    results = run_dialogue(session, user, _sets(1, 12))
    assert results[0].llm_distribution == pytest.approx([0.2, 0.3, 0.5])
    settings = backend.calls[0][1]
    assert settings.candidates == ("1", "2", "3")
    assert settings.answer_prefix == "The best option is Flight "
    overridden = [r for r in results if r.decision.source == "bayes"]
    kept = [r for r in results if r.decision.source == "llm"]
    assert overridden and kept
    for r in overridden:
        assert r.bayes_distribution[r.bayes_choice] >= 0.6 and r.bayes_choice != 2


def test_unparseable_reply_reasks_then_marks_invalid() -> None:
    backend = ScriptedBackend.from_replies(["I need more information.", "Hmm."])
    session = Session(FLIGHT, backend, policy="llm", max_reasks=1)
    r = session.recommend(_sets()[0])
    assert r.invalid and r.raw_replies == ["I need more information.", "Hmm."]
    assert len(backend.calls) == 2
    assert "The best option is Flight N" in backend.calls[1][0][-1]["content"]
    assert r.decision.source == "bayes" and r.shown_choice == r.bayes_choice
    turn = session.observe(0)
    assert turn.invalid


def test_reask_recovers() -> None:
    backend = ScriptedBackend.from_replies(["Let me think", "Flight 1"])
    session = Session(FLIGHT, backend)
    r = session.recommend(_sets()[0])
    assert r.llm_choice == 0 and not r.invalid


def test_backend_failure_is_recorded_not_raised() -> None:
    def boom(_messages):
        raise BackendError("upstream down", status_code=503)

    session = Session(FLIGHT, ScriptedBackend(boom), policy="hint")
    r = session.recommend(_sets()[0])
    assert r.errors and "503" in r.errors[0]
    assert r.shown_choice == r.bayes_choice


def test_hint_puts_belief_in_prompt() -> None:
    backend = ScriptedBackend.from_replies(["Flight 1"])
    session = Session(FLIGHT, backend, policy="hint")
    session.recommend(_sets()[0])
    assert "Bayesian model of my preferences" in backend.calls[0][0][-1]["content"]
    session.observe(1)
    assert "Bayesian" not in session.messages[0]["content"]  # history stays hint-free


def test_bayes_policy_needs_no_backend_and_options_as_text() -> None:
    session = Session(FLIGHT, None, policy="bayes")
    texts = FLIGHT.render_options(_sets()[0])
    r = session.recommend(texts)
    assert r.decision.source == "bayes" and r.llm_choice is None
    assert session.observe(r.shown_choice).shown_choice == r.bayes_choice


def test_free_form_domain_has_no_belief(tmp_path) -> None:
    prompts = DialoguePrompts(
        item="Product", intro="Help me shop.", question="Which product is the best option?"
    )
    backend = ScriptedBackend.from_replies(["Product 2"])
    session = Session(
        None, backend, policy="guard", prompts=prompts, n_options=2, log=tmp_path / "l.jsonl"
    )
    r = session.recommend(["red mug, $12", "blue mug, $9"])
    assert r.belief is None and r.shown_choice == 1 and r.bayes_choice is None
    turn = session.observe(0)
    assert turn.belief is not None and turn.belief.available is False
    session.close()


def test_bad_inputs_name_field_and_value() -> None:
    session = Session(FLIGHT, ScriptedBackend.from_replies(["Flight 1"]))
    with pytest.raises(OptionError):
        session.recommend(_sets()[0][:2])
    with pytest.raises(ConfigError):
        session.observe(0)  # nothing recommended yet
    session.recommend(_sets()[0])
    with pytest.raises(ChoiceError) as info:
        session.observe(3)
    assert info.value.field == "choice" and info.value.value == 3
    with pytest.raises(ConfigError):
        session.recommend(_sets()[1])  # observe first
    with pytest.raises(ConfigError) as info2:
        Session(FLIGHT, None, policy="llm")
    assert info2.value.field == "backend"
