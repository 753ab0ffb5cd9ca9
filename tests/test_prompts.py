"""Prompt styles: the paper's wording and the compact rendering, and how a tuned adapter's style
reaches the session and the evaluation harness."""

from __future__ import annotations

import json

import numpy as np
import pytest

from beliefagent.adapters import ScriptedBackend
from beliefagent.adapters.models import adapter_prompt_style
from beliefagent.domains import load_domain
from beliefagent.errors import ConfigError, DataError
from beliefagent.eval.tasks import ChoiceFormat
from beliefagent.export import build_examples
from beliefagent.finetune.data import ChatExample, encode_example, prompt_style_of
from beliefagent.middleware import Session
from beliefagent.prompts import DialoguePrompts, build_dialogue, check_prompt_style

FLIGHT = load_domain("flight")
SET = np.array([[0, 0, 0, 0], [10, 5, 1, 10], [3, 7, 2, 4]])  # levels (O, F)


def test_compact_options_are_codes_times_ten() -> None:
    p = DialoguePrompts.for_domain(FLIGHT, "compact")
    # stops has 3 levels coded 0, .5, 1 -> 0, 5, 10; the others 11 levels -> 0..10
    assert p.render_options(FLIGHT, SET) == ["1: 0 0 0 0", "2: 10 5 5 10", "3: 3 7 10 4"]
    # the paper style renders the domain's own text, unchanged
    paper = DialoguePrompts.for_domain(FLIGHT)
    assert paper.render_options(FLIGHT, SET) == FLIGHT.render_options(SET)


def test_compact_dialogue_text() -> None:
    p = DialoguePrompts.for_domain(FLIGHT, "compact")
    texts = [p.render_options(FLIGHT, SET)] * 2
    msgs = build_dialogue(p, texts, answers=[1, 2], choices=[2, 2])
    assert msgs[0]["content"] == (
        "Pick the flight I prefer; my preferences stay the same. Each flight: departure time, "
        "duration, number of stops, price (0-10).\n1: 0 0 0 0\n2: 10 5 5 10\n3: 3 7 10 4"
    )
    assert msgs[1] == {"role": "assistant", "content": "2"}
    assert msgs[2]["content"].startswith("No, 3.\n1: 0 0 0 0")
    assert msgs[3] == {"role": "assistant", "content": "3"}
    assert p.feedback(2, 2) == "Yes, 3." and p.feedback(None, 0) == "I prefer 1."
    assert p.prefix() == ""


def test_bad_style_names_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        DialoguePrompts.for_domain(FLIGHT, "terse")
    assert err.value.field == "prompt_style" and err.value.value == "terse"
    assert check_prompt_style("compact") == "compact"


def test_compact_teaching_rows_encode_with_the_label_token(tokenizer) -> None:
    sets = FLIGHT.random_option_sets(np.random.default_rng(0), 3)
    examples, _ = build_examples(
        FLIGHT,
        [("s0", "u0", sets, [0, 1, 2])],
        "oracle",
        prompts=DialoguePrompts.for_domain(FLIGHT, "compact"),
    )
    row = examples[0].to_chat()
    assert row["prompt_style"] == "compact" and row["answer_prefix"] == ""
    chat = ChatExample.from_dict(row)
    enc = encode_example(chat, tokenizer)
    assert enc is not None and len(enc.label_positions) == 3
    labels = [tokenizer.decode([enc.input_ids[p + 1]]) for p in enc.label_positions]
    assert labels == ["1", "2", "3"]
    # paper-style rows keep their format (no new keys)
    paper, _ = build_examples(FLIGHT, [("s0", "u0", sets, [0, 1, 2])], "oracle")
    assert "prompt_style" not in paper[0].to_chat()


def test_a_teaching_set_has_one_style() -> None:
    base = {"messages": [{"role": "assistant", "content": "1"}], "targets": [0]}
    rows = [
        ChatExample.from_dict({**base, "labels": ["1", "2"], "prompt_style": s})
        for s in ("paper", "compact")
    ]
    with pytest.raises(DataError, match="mixes prompt styles"):
        prompt_style_of(rows)
    assert prompt_style_of(rows[1:]) == "compact"


def test_adapter_metadata_gives_the_style(tmp_path) -> None:
    assert adapter_prompt_style(None) == "paper"
    assert adapter_prompt_style(tmp_path) == "paper"  # no metadata: the paper's style
    (tmp_path / "training_meta.json").write_text(json.dumps({"prompt_style": "compact"}))
    assert adapter_prompt_style(tmp_path) == "compact"
    (tmp_path / "training_meta.json").write_text("{not json")
    with pytest.raises(ConfigError) as err:
        adapter_prompt_style(tmp_path)
    assert err.value.field == "adapter_path"


def test_session_asks_a_compact_backend_in_its_style() -> None:
    backend = ScriptedBackend.from_replies(["2"])
    backend.prompt_style = "compact"  # what LocalBackend reads from a tuned adapter
    s = Session(FLIGHT, backend, policy="llm")
    turn = s.recommend(SET)
    assert turn.llm_choice == 1
    prompt = backend.calls[0][0]
    assert prompt[-1]["content"].endswith("1: 0 0 0 0\n2: 10 5 5 10\n3: 3 7 10 4")
    # the logged options stay the domain's own text (export and replay parse them)
    assert turn.options == FLIGHT.render_options(SET)
    s.observe(2)
    s.recommend(SET)
    assert backend.calls[1][0][1] == {"role": "assistant", "content": "2"}
    assert backend.calls[1][0][2]["content"].startswith("No, 3.\n")


def test_wrappers_keep_the_style() -> None:
    from beliefagent.adapters import RetryingBackend

    inner = ScriptedBackend.from_replies(["1"])
    assert RetryingBackend(inner).prompt_style == "paper"
    inner.prompt_style = "compact"
    wrapped = RetryingBackend(inner)
    assert wrapped.prompt_style == "compact"
    s = Session(FLIGHT, wrapped, policy="llm")
    s.recommend(SET)
    assert inner.calls[0][0][-1]["content"].endswith("3: 3 7 10 4")


def test_eval_format_in_compact_style() -> None:
    fmt = ChoiceFormat(FLIGHT, "compact")
    assert fmt.answer_prefix == "" and fmt.answer_text(0) == "1"
    assert fmt.user_message((0, 1), SET).startswith("No, 2.\n1: 0 0 0 0")
    assert fmt.parse("3") == 2


SET2 = np.array([[5, 5, 2, 5], [1, 2, 0, 9], [9, 0, 1, 0]])


def test_echo_style_restates_the_chosen_option() -> None:
    p = DialoguePrompts.for_domain(FLIGHT, "compact-echo")
    assert p.echo and p.style == "compact-echo" and check_prompt_style("compact-echo")
    first, second = p.render_options(FLIGHT, SET), p.render_options(FLIGHT, SET2)
    msgs = build_dialogue(p, [first, second, first], answers=[1, 2, 0], choices=[2, 2, 0])
    assert msgs[0]["content"] == DialoguePrompts.for_domain(FLIGHT, "compact").first_message(first)
    assert msgs[2]["content"] == "No, 3: 3 7 10 4.\n" + "\n".join(second)
    assert msgs[4]["content"].startswith("Yes, 3: 9 0 5 0.\n1: 0 0 0 0")
    assert p.feedback(None, 1, first) == "I prefer 2: 10 5 5 10."
    # without the last round's lines (or in another style) the feedback is compact's
    assert p.feedback(1, 2) == "No, 3."
    assert DialoguePrompts.for_domain(FLIGHT, "compact").feedback(1, 2, first) == "No, 3."
    with pytest.raises(ValueError, match="not an option"):
        p.feedback(0, 5, first)


def test_echo_style_is_the_same_in_session_eval_and_export() -> None:
    """What a model is trained on (export), asked in the middleware and scored on in the
    evaluation harness must be one text."""
    p = DialoguePrompts.for_domain(FLIGHT, "compact-echo")
    texts = [p.render_options(FLIGHT, SET), p.render_options(FLIGHT, SET2)]
    exported = build_dialogue(p, texts, answers=[1, 0], choices=[2, 0])
    backend = ScriptedBackend.from_replies(["2", "1"])
    backend.prompt_style = "compact-echo"
    s = Session(FLIGHT, backend, policy="llm")
    s.recommend(SET)
    s.observe(2)
    s.recommend(SET2)
    assert backend.calls[1][0][2]["content"] == exported[2]["content"]
    fmt = ChoiceFormat(FLIGHT, "compact-echo")
    assert fmt.user_message((1, 2), SET2, previous=SET) == exported[2]["content"]
    assert fmt.probe_messages((1, 2), previous=SET)[0]["content"].startswith("No, 3: 3 7 10 4.")
