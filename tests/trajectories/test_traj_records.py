"""The record schema: round trips, validation messages, and lenient reading of newer logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from beliefagent.errors import ChoiceError, DataError, InputError
from beliefagent.trajectories import (
    SCHEMA_VERSION,
    BeliefSnapshot,
    Decision,
    OptionRecord,
    SessionEnd,
    SessionStart,
    Turn,
    parse_record,
)

from .builders import FLIGHTS, make_turn


def _records() -> list[SessionStart | Turn | SessionEnd]:
    return [
        SessionStart(
            session_id="s1",
            user_id="u1",
            domain="flights",
            policy="guard",
            backend="vllm",
            model="llama-8b",
            adapter="bayes-lora",
            settings={"temperature": 0.0, "stop": ["\n"], "nested": {"a": [1, None, True]}},
            meta={"experiment": "sweep-3", "seed": 7},
        ),
        make_turn(),
        Turn(session_id="s1", domain="flights", round=1, options=[OptionRecord(text="only text")]),
        SessionEnd(session_id="s1", rounds=2, reason="user_quit"),
    ]


@pytest.mark.parametrize("record", _records(), ids=lambda r: r.kind)
def test_every_kind_round_trips_through_json(record: SessionStart | Turn | SessionEnd) -> None:
    line = record.model_dump_json()
    assert "\n" not in line
    back = parse_record(line)
    assert back == record
    assert type(back) is type(record)
    assert json.loads(line)["schema_version"] == SCHEMA_VERSION


def test_feature_types_survive_round_trip() -> None:
    back = parse_record(make_turn().model_dump_json())
    assert isinstance(back, Turn)
    features = back.options[0].features
    assert features == {"price": 320, "stops": 1, "hours": 7.0}
    assert features is not None and isinstance(features["price"], int)
    assert isinstance(features["hours"], float)
    assert back.options[2].features == FLIGHTS[2].features


@pytest.mark.parametrize("field", ["llm_choice", "bayes_choice", "shown_choice", "user_choice"])
@pytest.mark.parametrize("value", [3, -1, 99])
def test_choice_out_of_range_raises_choice_error_naming_field_and_value(
    field: str, value: int
) -> None:
    overrides: dict[str, Any] = {field: value}
    with pytest.raises(ChoiceError) as info:
        make_turn(**overrides)
    assert info.value.field == field
    assert info.value.value == value
    assert f"{field}={value}" in str(info.value)
    assert "0..2" in str(info.value)


def test_choice_assignment_is_validated_and_rolled_back() -> None:
    turn = make_turn(user_choice=1)
    with pytest.raises(ChoiceError, match="user_choice=5"):
        turn.user_choice = 5
    assert turn.user_choice == 1
    turn.user_choice = 2
    assert turn.user_choice == 2


def test_choice_with_no_options_is_rejected() -> None:
    with pytest.raises(ChoiceError, match="no options"):
        Turn(session_id="s", domain="d", round=0, options=[], user_choice=0)


def test_distribution_must_match_options() -> None:
    with pytest.raises(InputError, match=r"llm_distribution=.*2 probabilities for 3 options"):
        make_turn(llm_distribution=[0.5, 0.5])
    with pytest.raises(InputError, match="bayes_distribution"):
        make_turn(bayes_distribution=[0.5, 0.6, -0.1])


def test_non_finite_numbers_are_rejected() -> None:
    with pytest.raises(InputError, match="latency_s"):
        make_turn(latency_s=float("nan"))
    with pytest.raises(InputError, match="llm_distribution"):
        make_turn(llm_distribution=[float("inf"), 0.0, 0.0])


def test_pydantic_errors_become_input_errors_with_cause() -> None:
    with pytest.raises(InputError) as info:
        make_turn(round=-1)
    assert info.value.field == "round"
    assert info.value.value == -1
    assert info.value.__cause__ is not None


def test_unknown_field_is_rejected_when_writing() -> None:
    with pytest.raises(InputError, match="usr_choice"):
        make_turn(usr_choice=1)


def test_unknown_decision_source_is_rejected() -> None:
    with pytest.raises(InputError, match="source"):
        Decision(policy="advise", source="coin")  # type: ignore[arg-type]


def test_belief_marginals_are_rounded_and_map_index_checked() -> None:
    snap = BeliefSnapshot(entropy=1.0, n_hypotheses=3, marginals={"price": [1 / 3, 2 / 3]})
    assert snap.marginals == {"price": [0.3333, 0.6667]}
    with pytest.raises(InputError, match="map_index=3"):
        BeliefSnapshot(entropy=0.0, n_hypotheses=3, map_index=3)


def test_created_at_is_utc_and_must_be_aware() -> None:
    plus_two = timezone(timedelta(hours=2))
    end = SessionEnd(session_id="s", rounds=0, created_at=datetime(2025, 1, 1, 12, tzinfo=plus_two))
    assert end.created_at == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert end.created_at.utcoffset() == timedelta(0)
    assert end.model_dump_json().count("Z") == 1
    with pytest.raises(InputError, match="created_at"):
        SessionEnd(session_id="s", rounds=0, created_at=datetime(2025, 1, 1))


def test_reader_drops_fields_added_by_a_newer_writer() -> None:
    data = json.loads(make_turn().model_dump_json())
    data["new_top_level"] = 1
    data["options"][0]["new_nested"] = "x"
    ignored: set[str] = set()
    back = parse_record(json.dumps(data), ignored=ignored)
    assert back == make_turn().model_copy(update={"created_at": back.created_at})
    assert ignored == {"Turn.new_top_level", "OptionRecord.new_nested"}


def test_reader_rejects_a_newer_schema_version_and_unknown_kinds() -> None:
    data = json.loads(SessionEnd(session_id="s", rounds=1).model_dump_json())
    with pytest.raises(DataError, match=r"schema_version 2 is not supported.*newer"):
        parse_record({**data, "schema_version": 2})
    with pytest.raises(DataError, match="unknown record kind 'feedback'"):
        parse_record({**data, "kind": "feedback"})


def test_reader_reports_invalid_choice_as_data_error() -> None:
    data = json.loads(make_turn().model_dump_json())
    data["user_choice"] = 7
    with pytest.raises(DataError, match="user_choice=7: out of range"):
        parse_record(data)
