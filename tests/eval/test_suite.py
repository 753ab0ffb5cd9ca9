"""``beliefagent eval --suite generalisation``: one report, a table per task, the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from beliefagent.cli import app
from beliefagent.errors import ConfigError
from beliefagent.eval.suite import load_generalisation, suite_kind

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_suite_parses() -> None:
    spec = load_generalisation("generalisation")
    names = [t["name"] for t in spec["tasks"]]
    assert names[:7] == [f"flight-{k}" for k in range(2, 9)]
    assert {"hotel", "human", "webshop"} <= set(names)
    assert suite_kind(str(REPO / "eval" / "generalisation.toml")) == "generalisation"
    assert suite_kind("flight-sweep") is None


def test_unknown_task_key_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "g.toml"
    bad.write_text('kind = "generalisation"\n[[tasks]]\nname = "x"\ndomain = "flight-2"\nk = 1\n')
    with pytest.raises(ConfigError) as info:
        load_generalisation(str(bad))
    assert info.value.field == "suite.tasks[0]" and info.value.value == "k"


@pytest.mark.official
def test_suite_report_and_plot(samples_dir: Path, tmp_path: Path) -> None:
    suite = tmp_path / "mini.toml"
    webshop = samples_dir.parent / "webshop"
    suite.write_text(
        'name = "mini"\nkind = "generalisation"\nassistants = ["bayes", "random", "oracle"]\n'
        "users = 3\nheldout_sets = 4\n"
        f'[[tasks]]\nname = "flight-2"\ndomain = "flight-2"\n'
        f'interactions = ["{samples_dir / "interaction_flight_2features.jsonl"}"]\n'
        '[[tasks]]\nname = "flight-3"\ndomain = "flight-3"\ninteractions = ["nowhere.jsonl"]\n'
        f'[[tasks]]\nname = "hotel"\ndomain = "hotel"\n'
        f'interactions = ["{samples_dir / "interaction_hotel.jsonl"}"]\n'
        '[[tasks]]\nname = "human"\ndomain = "flight"\nprotocol = "dialogue"\n'
        'interactions = ["nowhere.jsonl"]\ngenerate = false\n'
        f'[[tasks]]\nname = "webshop"\nkind = "webshop"\ninteractions = ["{webshop}"]\n'
        f'heldout = ["{webshop}"]\nusers = 1\n'
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "--suite", str(suite), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    tasks = {t["task"]: t for t in data["tasks"]}
    assert tasks["flight-2"]["source"].startswith("official interactions")
    assert tasks["flight-3"]["source"].startswith("generated")
    assert tasks["human"]["status"] == "skipped"
    assert tasks["webshop"]["status"] == "done"
    assert [a["name"] for a in tasks["webshop"]["assistants"]] == ["random", "oracle"]
    assert len(tasks["flight-2"]["features"]) == 2
    report = (out / "report.md").read_text()
    for name in ("flight-2", "flight-3", "hotel", "human", "webshop"):
        assert f"## {name}" in report
    png = (out / "accuracy_vs_features.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert (out / "flight-2" / "report.md").is_file()
