"""Reading the web-shopping files as released; malformed lines name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from beliefagent.datasets.webshop import (
    category_name,
    find_webshop_categories,
    load_webshop_category,
    read_webshop_file,
)
from beliefagent.errors import DataError


def _line(**change: object) -> dict:
    rec: dict = {
        "idx": 0,
        "goal_attrs": ["light weight", "rubber sole"],
        "goal_options": {"size": "9", "color": "black"},
        "rounds": [
            {
                "options": ["Product 1: a", "Product 2: b", "Product 3: c"],
                "user_idx": 1,
                "score": [0.0, 0.5, 0.25],
            }
        ]
        * 5,
    }
    rec.update(change)
    return rec


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.mark.official
def test_official_samples_read(webshop_dir: Path) -> None:
    pairs = find_webshop_categories(webshop_dir, webshop_dir)
    assert [c for c, _, _ in pairs] == [
        "mens_athletic_shoes",
        "mens_boots",
        "mens_fashion_sneakers",
    ]
    assert pairs[0][2] is None and pairs[1][2] is not None
    for name, inter, held in pairs:
        cat = load_webshop_category(inter, held)
        assert cat.name == name and len(cat.users) == 10
        for u in cat.users:
            assert len(u.rounds) == 5
            for s in u.rounds:
                assert len(s.options) == 3 and s.options[0].startswith("Product 1: ")
                assert s.best == s.user_idx  # the user picks the top score
        if held is not None:
            assert cat.users_without_heldout == 9
            assert len(cat.users[0].heldout) == 100
            assert all(s.best == s.user_idx for s in cat.users[0].heldout)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "JSON object"),
        (_line(score=None) | {"rounds": [{"options": ["a", "b"], "user_idx": 0}]}, "'score'"),
        (
            _line(rounds=[{"options": ["a", "b", "c"], "user_idx": 3, "score": [0, 0, 1]}]),
            "'user_idx' 3",
        ),
        (_line(rounds=[{"options": ["a", "b", "c"], "user_idx": 0, "score": [0, 1]}]), "'score'"),
        (_line(rounds=[{"options": ["a", ""], "user_idx": 0, "score": [0, 1]}]), "'options'"),
        ({k: v for k, v in _line().items() if k != "goal_attrs"}, "'goal_attrs'"),
        (_line(idx="zero"), "'idx'"),
        (_line(rounds=[]), "'rounds' is empty"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad: object, message: str) -> None:
    path = _write(tmp_path / "interaction_shoes.jsonl", [_line(), bad])
    with pytest.raises(DataError) as info:
        read_webshop_file(path, "interaction")
    assert f"{path}:2" in str(info.value)
    assert message in str(info.value)


def test_heldout_line_must_be_the_same_user(tmp_path: Path) -> None:
    inter = _write(tmp_path / "interaction_shoes.jsonl", [_line(), _line(idx=1)])
    sets = _line()["rounds"]
    held = _write(
        tmp_path / "heldout_shoes.jsonl",
        [
            {
                "idx": 0,
                "goal_attrs": ["light weight", "rubber sole"],
                "goal_options": {"size": "9", "color": "black"},
                "all_options": sets,
            },
            {"idx": 7, "goal_attrs": ["x"], "goal_options": {}, "all_options": sets},
        ],
    )
    with pytest.raises(DataError) as info:
        load_webshop_category(inter, held)
    assert f"{held}:2" in str(info.value) and "idx 7" in str(info.value)


def test_pairing_by_category_and_names(tmp_path: Path) -> None:
    (tmp_path / "interaction").mkdir()
    (tmp_path / "heldout").mkdir()
    _write(tmp_path / "interaction" / "boots.jsonl", [_line()])
    _write(tmp_path / "interaction" / "sandals.jsonl", [_line()])
    _write(tmp_path / "heldout" / "boots.jsonl", [_line()])
    pairs = find_webshop_categories(tmp_path / "interaction", tmp_path / "heldout")
    assert [(c, h is not None) for c, _, h in pairs] == [("boots", True), ("sandals", False)]
    assert category_name("interaction_mens_boots.jsonl") == "mens_boots"
    with pytest.raises(DataError) as info:
        find_webshop_categories(tmp_path / "interaction", categories=["clogs"])
    assert "clogs" in str(info.value)
