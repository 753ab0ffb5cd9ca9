"""The harness: the teacher row reproduces the teacher curve, baselines, policies through a
scripted backend, other protocols and resuming in process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beliefagent.adapters import Reply, ScriptedBackend
from beliefagent.domains import load_domain
from beliefagent.errors import ConfigError
from beliefagent.eval.harness import EvalConfig, load_results, prepare_task, run_eval
from beliefagent.eval.metrics import bootstrap_ci
from beliefagent.eval.tasks import ChoiceTask
from beliefagent.eval.teacher import run_teacher_eval
from beliefagent.teachers import heldout_accuracy_by_round
from beliefagent.trajectories import read_trajectories
from beliefagent.trajectories.records import EvalResult

PAPER = [56.8, 66.8, 73.2, 77.6, 80.7]


def _row(run_summary: dict, name: str) -> dict:
    return next(a for a in run_summary["assistants"] if a["name"] == name)


@pytest.mark.parametrize(("users", "sets", "seed"), [(20, 20, 0), (33, 7, 3)])
def test_bayes_row_equals_the_vectorised_teacher(
    tmp_path: Path, users: int, sets: int, seed: int
) -> None:
    config = EvalConfig(users=users, heldout_sets=sets, seed=seed)
    run = run_eval(config, ["bayes"], tmp_path)
    task = run.task
    assert isinstance(task, ChoiceTask)
    acc = heldout_accuracy_by_round(
        task.domain, task.user_weights, task.rounds, task.choices, task.heldout, task.truth
    )
    expected = [round(float(a) * 100, 2) for a in acc]
    assert np.allclose(_row(run.summary, "bayes")["accuracy_by_round"], expected, atol=0.011)
    assert (
        run.summary["teacher_accuracy_by_round"] == _row(run.summary, "bayes")["accuracy_by_round"]
    )
    # ... and the teacher-eval command's own numbers on the same seed
    te = run_teacher_eval(task.domain, users=users, heldout_sets=sets, seed=seed)
    assert np.allclose(te.accuracy_by_round, expected, atol=0.011)


@pytest.mark.slow
@pytest.mark.official
def test_bayes_row_on_the_official_files(official_dir: Path, tmp_path: Path) -> None:
    config = EvalConfig(
        users=None,
        heldout=str(official_dir / "heldout_flight.json"),
        interactions=str(official_dir / "interaction_flight.jsonl"),
        probe=False,
    )
    run = run_eval(config, ["bayes"], tmp_path)
    assert run.summary["n_users"] == 624 and run.summary["n_heldout"] == 100
    assert np.allclose(_row(run.summary, "bayes")["accuracy_by_round"][1:], PAPER, atol=0.5)


def test_baselines(tmp_path: Path) -> None:
    run = run_eval(EvalConfig(users=30, heldout_sets=20), ["bayes", "random", "oracle"], tmp_path)
    bayes, rand, oracle = (_row(run.summary, n) for n in ("bayes", "random", "oracle"))
    assert len(bayes["accuracy_by_round"]) == 6
    assert (
        bayes["accuracy_by_round"][5] > bayes["accuracy_by_round"][1] > rand["accuracy_by_round"][1]
    )
    assert oracle["accuracy_by_round"][0] > 95 and oracle["probe"]["corr_true"] == 1.0
    assert bayes["agreement_heldout"] == 100.0 and bayes["agreement_dialogue"] == 100.0
    assert bayes["probe"]["corr_teacher"] == 1.0
    assert 15 < rand["accuracy_by_round"][3] < 50
    for row in (bayes, rand, oracle):
        for (lo, hi), m in zip(row["accuracy_ci"], row["accuracy_by_round"], strict=True):
            assert lo <= m <= hi
    # a Bayesian learner changes its mind more on more informative rounds
    bins = bayes["informativity"]["bins"]
    assert bins[2]["belief_change"] > bins[0]["belief_change"]
    assert "calibration" in bayes and "calibration" not in rand


def test_random_is_seeded_per_user(tmp_path: Path) -> None:
    a = run_eval(EvalConfig(users=5, heldout_sets=5), ["random"], tmp_path / "a")
    b = run_eval(EvalConfig(users=5, heldout_sets=5), ["random", "bayes"], tmp_path / "b")
    assert _row(a.summary, "random") == _row(b.summary, "random")


def test_bootstrap_ci_brackets_the_mean() -> None:
    v = np.random.default_rng(0).random((50, 3))  # (U, K)
    ci = bootstrap_ci(v)  # (K, 2)
    assert ci.shape == (3, 2)
    assert np.all(ci[:, 0] <= v.mean(0)) and np.all(v.mean(0) <= ci[:, 1])


def _cheapest(messages: list[dict[str, str]]) -> Reply:
    """A model that always names the flight with the lowest price, scoring its labels."""
    text = messages[-1]["content"]
    prices = [int(p) for p in __import__("re").findall(r"price: \$(\d+)", text)[-3:]]
    best = int(np.argmin(prices)) if len(prices) == 3 else 0
    scores = {str(i + 1): (-0.1 if i == best else -3.0) for i in range(3)}
    return Reply(
        text=f"The best option is Flight {best + 1}.", model="m", candidate_logprobs=scores
    )


def test_scripted_llm_and_policies(tmp_path: Path) -> None:
    backend = ScriptedBackend(_cheapest)
    names = ["bayes", "cheap", "cheap#guard", "cheap#bayes", "cheap#hint"]
    run = run_eval(
        EvalConfig(users=6, heldout_sets=5),
        names,
        tmp_path,
        backends={"cheap": backend},
    )
    cheap, guard, viabayes = (_row(run.summary, n) for n in names[1:4])
    assert cheap["invalid_rate"] == 0.0 and "calibration" in cheap
    # a fixed rule never changes its held-out answers
    assert cheap["informativity"]["bins"][2]["belief_change"] == 0.0
    assert viabayes["accuracy_by_round"] == _row(run.summary, "bayes")["accuracy_by_round"]
    assert guard["agreement_heldout"] >= cheap["agreement_heldout"]
    assert "probe" in cheap  # probe answers parse as a number 1..5
    hinted = [
        c[0] for c in backend.calls if "Evidence from a Bayesian model" in c[0][-1]["content"]
    ]
    assert hinted, "the hint policy puts the teacher's belief in the prompt"
    # every held-out query after round r follows the model's own dialogue of r rounds
    first = backend.calls[0][0]
    assert len(first) == 1 and first[0]["content"].startswith("Help me select the best flights")
    log = read_trajectories(tmp_path / "results.jsonl")
    assert log.clean
    results = [r for r in log.records if isinstance(r, EvalResult)]
    assert len(results) == 6 * len(names)


def test_invalid_answers_count(tmp_path: Path) -> None:
    backend = ScriptedBackend(lambda m: "I cannot tell.")
    run = run_eval(
        EvalConfig(users=2, heldout_sets=3, probe=False),
        ["mute", "mute#guard"],
        tmp_path,
        backends={"mute": backend},
    )
    mute, guard = _row(run.summary, "mute"), _row(run.summary, "mute#guard")
    assert mute["invalid_rate"] == 100.0 and mute["accuracy_by_round"] == [0.0] * 6
    # an invalid answer falls back to the teacher under a policy
    assert guard["agreement_heldout"] == 100.0


def test_answer_shares_show_a_collapsed_model(tmp_path: Path) -> None:
    backend = ScriptedBackend(lambda m: "The best option is Flight 2.")
    run = run_eval(
        EvalConfig(users=3, heldout_sets=4, probe=False),
        ["two", "random", "bayes"],
        tmp_path,
        backends={"two": backend},
    )
    assert _row(run.summary, "two")["answer_shares"] == [0.0, 100.0, 0.0]
    for name in ("random", "bayes"):
        shares = _row(run.summary, name)["answer_shares"]
        assert len(shares) == 3 and abs(sum(shares) - 100.0) < 0.1 and max(shares) < 100.0
    from beliefagent.eval.report import write_report

    write_report(run.summary, tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "answer shares %" in report and "| 0/100/0 |" in report


def test_resume_in_process_counts_each_dialogue_once(tmp_path: Path) -> None:
    config = EvalConfig(users=8, heldout_sets=4, probe=False)
    full = run_eval(config, ["bayes", "random"], tmp_path / "full")
    # a run that stopped after 3 users of bayes: keep only those results in the log
    part = tmp_path / "part"
    run_eval(config, ["bayes", "random"], part)
    lines = (part / "results.jsonl").read_text().splitlines()
    keep = [ln for ln in lines if '"assistant":"bayes"' in ln][:3]
    (part / "results.jsonl").write_text("\n".join(keep) + "\n")
    resumed = run_eval(config, ["bayes", "random"], part)
    assert resumed.resumed == 3
    assert resumed.summary["assistants"] == full.summary["assistants"]
    assert len(load_results(part / "results.jsonl", config.run_key())) == 16


def test_a_different_config_is_refused(tmp_path: Path) -> None:
    run_eval(EvalConfig(users=2, heldout_sets=2), ["bayes"], tmp_path)
    with pytest.raises(ConfigError) as info:
        run_eval(EvalConfig(users=3, heldout_sets=2), ["bayes"], tmp_path)
    assert info.value.field == "out"
    assert json.loads((tmp_path / "config.json").read_text())["config"]["users"] == 2


def test_bigfive_questionnaire(tmp_path: Path) -> None:
    backend = ScriptedBackend(lambda m: "My prediction: 3.")
    run = run_eval(
        EvalConfig(domain="bigfive", users=6, heldout_sets=5, rounds=4),
        ["bayes", "random", "oracle", "three"],
        tmp_path,
        backends={"three": backend},
    )
    s = run.summary
    assert s["protocol"] == "questionnaire" and s["chance"] == 20.0
    bayes, three = _row(s, "bayes"), _row(s, "three")
    assert len(bayes["accuracy_by_round"]) == 5
    assert three["invalid_rate"] == 0.0
    assert backend.calls[0][0][0]["content"].startswith("I will answer a personality")


def test_flight_k_and_hotel(tmp_path: Path) -> None:
    for name in ("flight-2", "hotel"):
        run = run_eval(EvalConfig(domain=name, users=5, heldout_sets=4), ["bayes"], tmp_path / name)
        assert run.summary["domain"] == name
        assert len(run.summary["assistants"][0]["accuracy_by_round"]) == 6


def test_dialogue_protocol_on_generated_users(tmp_path: Path) -> None:
    run = run_eval(
        EvalConfig(users=10, protocol="dialogue", likelihood="epsilon", noise=0.1),
        ["bayes", "oracle"],
        tmp_path,
    )
    assert run.summary["n_heldout"] == 0
    assert len(_row(run.summary, "bayes")["accuracy_by_round"]) == 5
    assert _row(run.summary, "oracle")["dialogue_accuracy"] > 90


@pytest.mark.official
def test_real_people_suite(official_dir: Path, tmp_path: Path) -> None:
    config = EvalConfig(
        users=50,
        interactions=str(official_dir / "interaction_flight_human.jsonl"),
        likelihood="epsilon",
        noise=0.1,
        probe=False,
    )
    task = prepare_task(config)
    assert task.protocol == "dialogue" and task.n_users == 50
    run = run_eval(config, ["bayes", "random"], tmp_path)
    assert 0 < _row(run.summary, "bayes")["dialogue_accuracy"] <= 100


def test_unknown_domain_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(Exception) as info:
        run_eval(EvalConfig(domain="nope"), ["bayes"], tmp_path)
    assert getattr(info.value, "field", None) == "domain"
    _ = load_domain("flight")
