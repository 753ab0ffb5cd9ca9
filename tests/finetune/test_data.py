"""Reading teaching sets, tokenizing dialogues, and the collator's masking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from beliefagent.errors import DataError
from beliefagent.finetune.data import (
    IGNORE_INDEX,
    EncodedExample,
    encode_example,
    load_examples,
)

torch = pytest.importorskip("torch")

from beliefagent.finetune.data import collate  # noqa: E402


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": "x",
        "messages": [
            {"role": "user", "content": "Which flight?"},
            {"role": "assistant", "content": "The best option is Flight 2."},
        ],
        "targets": [1],
        "soft_targets": [[0.25, 0.5, 0.25]],
        "labels": ["1", "2", "3"],
        "user_choices": [2],
    }
    row.update(changes)
    return row


def test_collate_builds_the_documented_tensors() -> None:
    a = EncodedExample(
        "a", [5, 6, 7, 31, 34, 2], [-100, -100, -100, 31, 34, 2], [3], [1], None, [1], (33, 34, 35)
    )
    b = EncodedExample(
        "b",
        [5, 33, 2, 35],
        [-100, 33, 2, 35],
        [0, 2],
        [0, 2],
        [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
        None,
        (33, 34, 35),
    )
    t = collate([a, b], pad_token_id=0)
    assert t["input_ids"].tolist() == [[5, 6, 7, 31, 34, 2], [5, 33, 2, 35, 0, 0]]
    assert t["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
    assert t["labels"].tolist() == [[-100, -100, -100, 31, 34, 2], [-100, 33, 2, 35, -100, -100]]
    assert t["label_positions"].tolist() == [[3, 0], [0, 2]]
    assert t["label_mask"].tolist() == [[True, False], [True, True]]
    assert t["hard_targets"].tolist() == [[1, 0], [0, 2]]
    assert t["soft_targets"].tolist() == [
        [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]],  # one-hot of the hard target when no soft one
        [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
    ]
    assert t["label_token_ids"].tolist() == [33, 34, 35]


def test_encode_masks_everything_but_the_answers(make_data: Any, tokenizer: Any) -> None:
    examples = load_examples(make_data(n=2, rounds=3))
    for ex in examples:
        enc = encode_example(ex, tokenizer)
        assert enc is not None
        answers = [i for i, lab in enumerate(enc.labels) if lab != IGNORE_INDEX]
        # labelled tokens are exactly the assistant replies, each with its end-of-turn marker
        text = tokenizer.decode([enc.input_ids[i] for i in answers])
        expected = "".join(f"The best option is Flight {t + 1}.<|im_end|>\n" for t in ex.targets)
        assert text == expected
        assert all(enc.labels[i] == enc.input_ids[i] for i in answers)
        # the whole user side (system prompt, options, feedback) carries no labels
        assert tokenizer.decode(enc.input_ids[: answers[0]]).count("Which flight") == 1
        assert [tokenizer.decode(i) for i in enc.label_token_ids] == ["1", "2", "3"]
        for pos, target in zip(enc.label_positions, ex.targets, strict=True):
            assert enc.input_ids[pos + 1] == enc.label_token_ids[target]
            assert tokenizer.decode(enc.input_ids[pos - 1 : pos + 1]).endswith("Flight ")
        assert enc.soft_targets == ex.soft_targets


def test_encode_drops_turns_beyond_max_length(make_data: Any, tokenizer: Any) -> None:
    ex = load_examples(make_data(n=1, rounds=3))[0]
    full = encode_example(ex, tokenizer)
    assert full is not None
    cut = encode_example(ex, tokenizer, max_length=full.label_positions[1] + 3)
    assert cut is not None
    assert len(cut.label_positions) == 1
    assert cut.input_ids == full.input_ids[: len(cut.input_ids)]
    assert encode_example(ex, tokenizer, max_length=20) is None


def test_load_examples_reports_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_row()) + "\n{not json\n")
    with pytest.raises(DataError) as info:
        load_examples(path)
    assert info.value.line == 2
    path.write_text(json.dumps(_row(targets=[0, 1])) + "\n")
    with pytest.raises(DataError, match="one index per assistant turn"):
        load_examples(path)
    path.write_text(json.dumps(_row(soft_targets=[[0.9, 0.9, 0.0]])) + "\n")
    with pytest.raises(DataError, match="soft_targets"):
        load_examples(path)
    with pytest.raises(DataError, match="no such"):
        load_examples(tmp_path / "missing.jsonl")


def test_load_examples_reads_a_valid_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_row(emptied=False)) + "\n\n")
    (ex,) = load_examples(path)
    assert ex.targets == [1]
    assert ex.soft_targets == [[0.25, 0.5, 0.25]]
    assert ex.user_choices == [2]
