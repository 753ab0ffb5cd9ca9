"""From trajectory logs to a written teaching set: round trips, splits, scrubbing, skips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from beliefagent.domains import load_domain
from beliefagent.errors import ConfigError
from beliefagent.export import (
    SkipReason,
    TeachingSession,
    export_teaching_set,
    session_seed,
    sessions_from_log,
)
from beliefagent.teachers import BayesianTeacher
from beliefagent.trajectories import (
    OptionRecord,
    SessionEnd,
    SessionStart,
    Turn,
    read_trajectories,
)

from .builders import FLIGHT, session_records, simulated_log, simulated_sessions, write_log


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _all_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(out.iterdir()))


def test_round_trip_targets_match_a_rerun_teacher(tmp_path: Path) -> None:
    log, sessions = simulated_log(tmp_path / "run.jsonl", 30, seed=1)
    manifest = export_teaching_set(log, tmp_path / "out", "bayes", "chat", 0.2, seed=4)
    rows = _read(tmp_path / "out" / "train.jsonl") + _read(tmp_path / "out" / "eval.jsonl")
    assert len(rows) == 30 == manifest["counts"]["sessions_read"]
    by_id = {s.session_id: s for s in sessions}
    wrong_early = 0
    for row in rows:
        s = by_id[row["id"]]
        assert row["user_id"] == s.user_id and row["domain"] == "flight"
        assert row["target"] == "bayes" and row["soft_targets"] is None
        assert row["user_choices"] == list(s.user_choices) and row["labels"] == ["1", "2", "3"]
        # The logged model answers (always Flight 1) are never the target: the teacher is re-run.
        teacher = BayesianTeacher(FLIGHT, tie_break="random", seed=session_seed(4, row["id"]))
        expected = []
        for option_set, choice in zip(s.option_sets, s.user_choices, strict=True):
            expected.append(teacher.recommend(option_set).choice)
            teacher.observe(option_set, choice)
        assert row["targets"] == expected
        for r, msg in enumerate(row["messages"]):
            if msg["role"] == "assistant":
                assert msg["content"] == f"The best option is Flight {expected[r // 2] + 1}."
            else:
                options = msg["content"].split("\n\n")[-1].split("\n")
                assert np.array_equal(FLIGHT.parse_option_set(options), s.option_sets[r // 2])
        wrong_early += sum(
            t != c for t, c in zip(row["targets"][:2], row["user_choices"][:2], strict=True)
        )
    assert wrong_early > 0
    # The manifest's hashes are the files' hashes.
    for name, info in manifest["files"].items():
        data = (tmp_path / "out" / name).read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["bytes"] == len(data)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest


def test_bayes_soft_round_trip(tmp_path: Path) -> None:
    log, _ = simulated_log(tmp_path / "run.jsonl", 8)
    export_teaching_set(log, tmp_path / "out", "bayes-soft", eval_fraction=0.0)
    rows = _read(tmp_path / "out" / "train.jsonl")
    assert len(rows) == 8 and _read(tmp_path / "out" / "eval.jsonl") == []
    for row in rows:
        assert len(row["soft_targets"]) == len(row["targets"]) == 5
        for probs, t in zip(row["soft_targets"], row["targets"], strict=True):
            assert sum(probs) == pytest.approx(1.0) and probs[t] == pytest.approx(max(probs))


def test_no_user_in_both_splits(tmp_path: Path) -> None:
    sessions = simulated_sessions(40, seed=2)
    records: list[Any] = []
    for i, s in enumerate(sessions):  # 10 users with 3 sessions each, 10 sessions without a user
        user = f"user-{i % 10}" if i < 30 else None
        records += session_records(s._replace(user_id=user))
    log = write_log(tmp_path / "run.jsonl", records)
    manifest = export_teaching_set(log, tmp_path / "out", eval_fraction=0.3, seed=9)
    train = _read(tmp_path / "out" / "train.jsonl")
    evals = _read(tmp_path / "out" / "eval.jsonl")
    assert len(train) + len(evals) == 40 and evals

    def users(rows: list[dict[str, Any]]) -> set[str]:
        return {r["user_id"] or f"session:{r['id']}" for r in rows}

    assert not users(train) & users(evals)
    assert manifest["counts"]["users"] == {"train": len(users(train)), "eval": len(users(evals))}
    assert len(users(evals)) == round(0.3 * 20)
    # Another seed, another split; the same seed, the same split.
    again = export_teaching_set(log, tmp_path / "o2", eval_fraction=0.3, seed=9)
    assert again["files"] == manifest["files"]
    other = export_teaching_set(log, tmp_path / "o3", eval_fraction=0.3, seed=10)
    assert other["files"]["eval.jsonl"]["sha256"] != manifest["files"]["eval.jsonl"]["sha256"]


EMAIL, PHONE, CARD = "jane.doe@example.com", "+1 415 555 0132", "4111 1111 1111 1111"


@pytest.mark.parametrize("include", [True, False])
def test_planted_personal_data_never_reaches_the_export(tmp_path: Path, include: bool) -> None:
    s = simulated_sessions(3, seed=5)
    messages = [f"write to {EMAIL}", f"or call {PHONE}", f"charge {CARD}", None, "ok"]
    records = session_records(s[0]._replace(user_id=EMAIL), user_messages=messages)
    records += session_records(s[1]) + session_records(s[2])
    log = write_log(tmp_path / "run.jsonl", records)
    assert EMAIL.encode() in log.read_bytes()  # the log store keeps it (not a credential)
    out = tmp_path / "out"
    manifest = export_teaching_set(log, out, "bayes", "chat", 0.5, include_user_messages=include)
    data = _all_bytes(out)
    for secret in (EMAIL, PHONE, CARD, "4111111111111111", "jane.doe", "555 0132"):
        assert secret.encode() not in data, secret
    rows = _read(out / "train.jsonl") + _read(out / "eval.jsonl")
    assert {r["user_id"] for r in rows} == {"anon-user-1", "u1", "u2"}
    assert manifest["ids_anonymised"] == 1
    first = next(r for r in rows if r["user_id"] == "anon-user-1")["messages"]
    if include:
        assert first[0]["content"].startswith("write to [EMAIL]\n\nHelp me select")
        assert first[2]["content"].startswith("or call [PHONE]\n\nYour option")
        assert first[4]["content"].startswith("charge [CARD]\n\nYour option")
        assert first[8]["content"].startswith("ok\n\nYour option")
        counts = manifest["pii_scrubbed"]
        assert counts["email"] == 2 and counts["phone"] == 1 and counts["card"] == 1
    else:
        assert b"write to" not in data and b"charge" not in data
        assert manifest["pii_scrubbed"]["email"] == 1  # the user id


def test_torn_and_invalid_lines_are_skipped_and_reported(tmp_path: Path) -> None:
    log, _ = simulated_log(tmp_path / "run.jsonl", 4)
    with log.open("ab") as fh:
        fh.write(b'{"kind": "turn", "nonsense": true}\n')
        fh.write(b"this is not json\n")
        fh.write(b'{"kind": "session_start", "session_id": "cut", "dom')  # torn by a crash
    manifest = export_teaching_set(log, tmp_path / "out", eval_fraction=0.0)
    assert manifest["counts"]["examples"]["train"] == 4
    assert manifest["counts"]["torn_lines"] == 1 and manifest["counts"]["invalid_lines"] == 2
    assert manifest["counts"]["skipped"] == {"invalid_line": 2, "torn_line": 1}
    (source,) = manifest["sources"]
    assert source["torn_lines"] == 1 and source["torn_line_numbers"] == [31]
    assert [n for n, _ in source["invalid"]] == [29, 30]  # 4 sessions x 7 records first
    reasons = {s["reason"] for s in manifest["skipped"]}
    assert reasons == {"torn_line", "invalid_line"}


def test_unusable_sessions_are_skipped_with_reasons(tmp_path: Path) -> None:
    s = simulated_sessions(8, seed=6)
    records: list[Any] = []
    records += session_records(s[0])  # fine
    records += session_records(s[1]._replace(session_id="sub"), domain="submarine")
    records += session_records(s[2]._replace(session_id="quiz"), domain="bigfive")
    bad_options = session_records(s[3]._replace(session_id="garbled"), features=False)
    turn = bad_options[2]
    assert isinstance(turn, Turn)
    bad_options[2] = turn.model_copy(
        update={"options": [OptionRecord(text=f"Flight {i}: a nice one") for i in (1, 2, 3)]}
    )
    records += bad_options
    records.append(SessionStart(session_id="silent", domain="flight", policy="advise"))
    records += [
        Turn(
            session_id="silent",
            domain="flight",
            round=0,
            options=session_records(s[4])[1].options,  # type: ignore[union-attr]
        )
    ]
    # A session cut after its 2nd round: the user never chose in round 2, then a gap.
    partial = session_records(s[5]._replace(session_id="partial"), end=False)
    t2 = partial[3]
    assert isinstance(t2, Turn)
    partial[3] = t2.model_copy(update={"user_choice": None})
    records += partial
    records += session_records(s[6]._replace(session_id="text-only"), features=False)
    records.append(SessionEnd(session_id="ghost", rounds=3))  # its other records were lost
    log = write_log(tmp_path / "run.jsonl", records)

    read = sessions_from_log(log)
    reasons = {sk.session_id: sk.reason for sk in read.skipped}
    assert reasons == {
        "sub": SkipReason.UNKNOWN_DOMAIN,
        "quiz": SkipReason.NO_TEACHER,
        "garbled": SkipReason.OPTIONS_UNPARSABLE,
        "silent": SkipReason.NO_USER_CHOICES,
        "ghost": SkipReason.NO_USER_CHOICES,
    }
    kept = {x.session_id: x for x in read.sessions["flight"]}
    assert set(kept) == {"s0", "partial", "text-only"}
    assert len(kept["partial"].user_choices) == 2 and read.source.truncated == 1
    assert read.source.without_end == 2  # "silent" and "partial"
    assert np.array_equal(kept["text-only"].option_sets, s[6].option_sets)

    manifest = export_teaching_set(log, tmp_path / "out", eval_fraction=0.0)
    assert manifest["counts"]["skipped"] == {
        "no_teacher": 1,
        "no_user_choices": 2,
        "options_unparsable": 1,
        "unknown_domain": 1,
    }
    assert manifest["counts"]["examples"]["train"] == 3
    detail = {r["session_id"]: r["detail"] for r in manifest["skipped"]}
    assert "submarine" in detail["sub"] and "questionnaire" in detail["quiz"]

    # With a domain given, sessions logged under other domains are skipped as such.
    read = sessions_from_log(read_trajectories(log), domain=load_domain("hotel"))  # type: ignore[arg-type]
    assert {sk.session_id: sk.reason for sk in read.skipped if sk.session_id != "ghost"} == {
        sid: SkipReason.OTHER_DOMAIN
        for sid in ("s0", "sub", "quiz", "garbled", "silent", "partial", "text-only")
    }
    assert read.n_sessions == 0


def test_duplicates_are_written_once(tmp_path: Path) -> None:
    log, _ = simulated_log(tmp_path / "run.jsonl", 6)
    twice = write_log(tmp_path / "copy.jsonl", [*read_trajectories(log).records])
    manifest = export_teaching_set([log, twice], tmp_path / "out", eval_fraction=0.0)
    rows = _read(tmp_path / "out" / "train.jsonl")
    assert len(rows) == 6 and manifest["counts"]["duplicates_dropped"] == 6
    assert manifest["counts"]["sessions_exported"] == 12
    assert len({json.dumps(r["messages"]) for r in rows}) == 6
    # A directory stands for its logs.
    again = export_teaching_set(tmp_path, tmp_path / "out2", eval_fraction=0.0)
    assert again["files"] == manifest["files"] and again["counts"]["logs"] == 2


def test_openai_lines_hold_only_messages(tmp_path: Path) -> None:
    log, _ = simulated_log(tmp_path / "run.jsonl", 5)
    export_teaching_set(log, tmp_path / "out", "bayes-soft", "openai", eval_fraction=0.0)
    rows = _read(tmp_path / "out" / "train.jsonl")
    assert len(rows) == 5
    for row in rows:
        assert set(row) == {"messages"}
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * 5
        assert all(set(m) == {"role", "content"} for m in row["messages"])


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path) -> None:
    log, _ = simulated_log(tmp_path / "run.jsonl", 3)
    export_teaching_set(log, tmp_path / "out", eval_fraction=0.0)
    with pytest.raises(ConfigError, match="overwrite"):
        export_teaching_set(log, tmp_path / "out", eval_fraction=0.0)
    export_teaching_set(log, tmp_path / "out", "oracle", eval_fraction=0.0, overwrite=True)
    assert _read(tmp_path / "out" / "train.jsonl")[0]["target"] == "oracle"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "eval.jsonl",
        "manifest.json",
        "train.jsonl",
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target": "gold"}, "target"),
        ({"fmt": "parquet"}, "format"),
        ({"eval_fraction": 1.0}, "eval_fraction"),
        ({"likelihood": "epsilon:lots"}, "likelihood"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, kwargs: dict[str, Any], field: str) -> None:
    log, _ = simulated_log(tmp_path / "run.jsonl", 1)
    with pytest.raises(ConfigError) as info:
        export_teaching_set(log, tmp_path / "out", **kwargs)
    assert info.value.field == field
    assert not (tmp_path / "out").exists()


def test_sessions_from_log_matches_what_was_logged(tmp_path: Path) -> None:
    log, sessions = simulated_log(tmp_path / "run.jsonl", 5)
    read = sessions_from_log(log)
    assert read.skipped == [] and read.source.records == 5 * 7
    got = read.sessions["flight"]
    assert [g.session_id for g in got] == [s.session_id for s in sessions]
    for g, s in zip(got, sessions, strict=True):
        assert isinstance(g, TeachingSession) and g.user_id == s.user_id
        assert np.array_equal(g.option_sets, s.option_sets)
        assert list(g.user_choices) == list(s.user_choices)
