"""The teaching comparison: teaching data for questionnaires, disjoint users, the whole loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beliefagent.compare import (
    ARMS,
    CompareSizes,
    compare_teaching,
    default_sizes,
    questionnaire_teaching_rows,
)
from beliefagent.domains import QuestionnaireDomain, load_domain
from beliefagent.errors import ConfigError
from beliefagent.eval.tasks import (
    QuestionnaireFormat,
    QuestionnaireTask,
    make_questionnaire_task,
    teacher_traces,
)
from beliefagent.finetune.data import ChatExample


def _task(users: int = 3, rounds: int = 4) -> QuestionnaireTask:
    domain = load_domain("bigfive")
    assert isinstance(domain, QuestionnaireDomain)
    return make_questionnaire_task(domain, users=users, heldout_items=5, rounds=rounds, seed=3)


@pytest.mark.parametrize("target", ["bayes", "bayes-soft", "oracle"])
def test_questionnaire_rows_follow_the_harness_format(target: str) -> None:
    task = _task()
    traces = teacher_traces(task)
    rows = questionnaire_teaching_rows(task, traces, target)
    fmt = QuestionnaireFormat(task.domain)
    assert len(rows) == task.n_users
    for u, row in enumerate(rows):
        ex = ChatExample.from_dict(json.loads(json.dumps(row)))  # round-trips through JSON
        assert ex.answer_prefix == "My prediction: "
        answers = task.answers[u].tolist()
        expected = answers if target == "oracle" else traces[u].dialogue_pred.tolist()
        assert ex.targets == expected
        assert ex.user_choices == answers
        # the first user turn is exactly what the harness sends; later ones give the answer
        assert ex.messages[0]["content"] == fmt.user_message(None, int(task.items[u][0]))
        assert ex.messages[2]["content"].startswith(f"My answer is {answers[0] + 1}.")
        assert ex.messages[1]["content"] == f"My prediction: {expected[0] + 1}."
        if target == "bayes-soft":
            assert ex.soft_targets is not None
            np.testing.assert_allclose(ex.soft_targets, traces[u].dialogue_dist, atol=1e-9)
        else:
            assert ex.soft_targets is None


def test_questionnaire_rows_reject_an_unknown_target() -> None:
    task = _task(users=1)
    with pytest.raises(ConfigError) as info:
        questionnaire_teaching_rows(task, teacher_traces(task), "bayes-hard")
    assert info.value.field == "target" and info.value.value == "bayes-hard"


def test_questionnaire_rows_encode_with_their_own_prefix(tokenizer: object) -> None:
    from beliefagent.finetune.data import encode_example

    task = _task(users=1, rounds=3)
    row = questionnaire_teaching_rows(task, teacher_traces(task), "bayes-soft")[0]
    enc = encode_example(ChatExample.from_dict(row), tokenizer)  # type: ignore[arg-type]
    assert enc is not None and len(enc.label_positions) == 3
    for pos, target in zip(enc.label_positions, row["targets"], strict=True):
        assert enc.input_ids[pos + 1] == enc.label_token_ids[target]
    assert len(enc.label_token_ids) == 5


def test_bad_arms_and_sizes_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        compare_teaching(tmp_path / "a", arms=["oracle", "magic"], quick=True)
    assert info.value.field == "arm"
    bad = CompareSizes(**{**default_sizes("flight", True).__dict__, "steps": 0})
    with pytest.raises(ConfigError) as info:
        compare_teaching(tmp_path / "b", sizes=bad)
    assert info.value.field == "steps" and info.value.value == 0
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep").write_text("x")
    with pytest.raises(ConfigError) as info:
        compare_teaching(tmp_path / "c", quick=True)
    assert info.value.field == "out"


def test_every_arm_maps_to_an_export_target_and_a_loss() -> None:
    assert set(ARMS) == {"oracle-taught", "bayes-hard", "bayes-soft"}
    assert {loss for _, loss in ARMS.values()} == {"ce", "kl"}


@pytest.mark.slow
def test_flight_comparison_runs_the_loop_with_disjoint_users(tmp_path: Path) -> None:
    summary = compare_teaching(tmp_path / "cmp", domain="flight", quick=True, progress=False)
    names = [a["name"] for a in summary["arms"]]
    assert names == ["local", "oracle-taught", "bayes-hard", "bayes-soft", "bayes", "random"]
    for a in summary["arms"]:
        assert len(a["accuracy_by_round"]) == 6
        assert a["answer_shares"] is not None and abs(sum(a["answer_shares"]) - 100) < 0.1
    # the tuned arms really are the adapters (not the built-in oracle assistant)
    tuned = {a["name"]: a for a in summary["arms"] if "adapter" in a}
    assert set(tuned) == set(ARMS)
    assert all(a["mean_entropy"] is not None for a in tuned.values())
    out = tmp_path / "cmp"
    # no teaching user is an evaluation user (both named by hypothesis index)
    log = [json.loads(x) for x in (out / "eval" / "results.jsonl").read_text().splitlines()]
    eval_users = {f"h{r['user_id']}" for r in log if r.get("user_id")}
    teach = (out / "teaching" / "bayes-hard" / "train.jsonl").read_text().splitlines()
    teach_users = {json.loads(x)["user_id"] for x in teach}
    assert eval_users and teach_users and not eval_users & teach_users
    assert (out / "report" / "accuracy_by_round.png").is_file()
    table = (out / "comparison.md").read_text()
    assert "| bayes-soft | bayes-soft / kl |" in table and "*Bayesian teacher*" in table


@pytest.mark.slow
def test_bigfive_comparison_runs_the_loop(tmp_path: Path) -> None:
    summary = compare_teaching(tmp_path / "cmp", domain="bigfive", quick=True, progress=False)
    names = [a["name"] for a in summary["arms"]]
    assert names == ["local", "bayes-hard", "bayes-soft", "bayes", "random"]
    soft = summary["arms"][2]
    assert soft["loss"] == "kl" and soft["mean_entropy"] is not None
    assert len(soft["answer_shares"]) == 5
