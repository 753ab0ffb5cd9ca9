"""``beliefagent eval`` through typer: the JSON contract, the report directory, suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from beliefagent.errors import ConfigError
from beliefagent.eval.command import eval_command, load_suite

REPO = Path(__file__).resolve().parents[2]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)  # two commands, so "eval" is named as in the real CLI
    return app


def test_json_contract(tmp_path: Path) -> None:
    args = ["eval", "--domain", "flight", "--assistant", "bayes", "--assistant", "random"]
    args += ["--users", "20", "--heldout-sets", "20", "--seed", "0", "--json"]
    result = CliRunner().invoke(_app(), [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # exactly one JSON object, nothing else
    assert [a["name"] for a in data["assistants"]] == ["bayes", "random"]
    for a in data["assistants"]:
        assert len(a["accuracy_by_round"]) == 6
        assert all(0 <= v <= 100 for v in a["accuracy_by_round"])
    bayes = data["assistants"][0]["accuracy_by_round"]
    assert bayes == data["teacher_accuracy_by_round"] and bayes[5] > bayes[0]


def test_report_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["eval", "-a", "bayes", "-a", "random", "-a", "oracle", "--users", "8"]
    base += ["--heldout-sets", "6", "--out", str(out)]
    result = CliRunner().invoke(_app(), [*base, "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert summary["ci_method"].startswith("bootstrap")
    report = (out / "report.md").read_text()
    assert "| assistant | R0 | R1 | R2 | R3 | R4 | R5 |" in report
    assert "| bayes | " in report and "| oracle | " in report
    for png in (
        "accuracy_by_round.png",
        "informativity.png",
        "calibration.png",
        "entropy_by_round.png",
    ):
        data = (out / png).read_bytes()
        assert len(data) > 1000 and data.startswith(b"\x89PNG")
    # rerunning into the same directory resumes: nothing is recomputed
    again = CliRunner().invoke(_app(), [*base, "--json"])
    assert json.loads(again.stdout)["resumed_results"] == 24


def test_suite_files_parse() -> None:
    names = sorted(p.stem for p in (REPO / "eval").glob("*.toml"))
    assert {"flight", "flight-sweep", "hotel", "bigfive", "human"} <= set(names)
    for name in names:
        if name == "generalisation":  # a task list, read by beliefagent.eval.suite
            continue
        suite = load_suite(str(REPO / "eval" / f"{name}.toml"))
        assert suite["runs"]


def test_suite_with_several_runs(tmp_path: Path) -> None:
    suite = tmp_path / "mini.toml"
    suite.write_text(
        'assistants = ["bayes"]\n'
        '[[runs]]\ndomain = "flight-2"\nusers = 3\nheldout_sets = 2\n'
        '[[runs]]\ndomain = "flight-3"\nusers = 3\nheldout_sets = 2\n'
    )
    result = CliRunner().invoke(
        _app(), ["eval", "--suite", str(suite), "--out", str(tmp_path / "o"), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["domain"] for r in data["runs"]] == ["flight-2", "flight-3"]
    assert (tmp_path / "o" / "flight-3" / "report.md").is_file()


def test_bad_suite_key(tmp_path: Path) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text('[[runs]]\ndomian = "flight"\n')
    with pytest.raises(ConfigError) as info:
        load_suite(str(suite))
    assert info.value.value == "domian"
