"""The ``export`` command, registered on a local Typer app as the CLI does."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from beliefagent.errors import ConfigError
from beliefagent.export import export_command

from .builders import simulated_log

app = typer.Typer()
app.command("export")(export_command)
app.command("noop")(lambda: None)  # two commands, so "export" is a subcommand as in the CLI


def test_export_json(tmp_path: Path) -> None:
    log, _ = simulated_log(tmp_path / "logs" / "run.jsonl", 10)
    out = tmp_path / "teach"
    result = CliRunner().invoke(
        app,
        [
            "export",
            str(tmp_path / "logs"),
            "--out",
            str(out),
            "--target",
            "bayes-soft",
            "--format",
            "chat",
            "--likelihood",
            "softmax:0.2",
            "--eval-fraction",
            "0.2",
            "--seed",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["target"] == "bayes-soft" and manifest["teacher"]["likelihood"] == "softmax:0.2"
    assert manifest["seed"] == 3 and manifest["counts"]["examples"] == {"train": 8, "eval": 2}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["sources"][0]["path"] == str(log)


def test_export_table_and_flags(tmp_path: Path) -> None:
    log, _ = simulated_log(tmp_path / "run.jsonl", 4)
    args = ["export", str(log), "-o", str(tmp_path / "t"), "--format", "openai", "-d", "flight"]
    result = CliRunner().invoke(app, [*args, "--keep-emptied", "--include-user-messages"])
    assert result.exit_code == 0, result.output
    assert "sessions read" in result.stdout and "examples train / eval" in result.stdout
    line = (tmp_path / "t" / "train.jsonl").read_text().splitlines()[0]
    assert set(json.loads(line)) == {"messages"}
    # A second run refuses to overwrite without --overwrite (a library error, for main()).
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, ConfigError) and again.exception.field == "out_dir"
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_bad_choices_are_rejected_by_the_parser(tmp_path: Path) -> None:
    log, _ = simulated_log(tmp_path / "run.jsonl", 1)
    result = CliRunner().invoke(app, ["export", str(log), "-o", str(tmp_path), "--target", "gold"])
    assert result.exit_code == 2
    bigfive = CliRunner().invoke(app, ["export", str(log), "-o", str(tmp_path), "-d", "bigfive"])
    assert isinstance(bigfive.exception, ConfigError) and bigfive.exception.field == "domain"


def test_help_lists_every_option() -> None:
    result = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for opt in (
        "--out",
        "--target",
        "--format",
        "--likelihood",
        "--domain",
        "--eval-fraction",
        "--seed",
        "--keep-emptied",
        "--include-user-messages",
        "--overwrite",
        "--json",
    ):
        assert opt in result.stdout, opt
