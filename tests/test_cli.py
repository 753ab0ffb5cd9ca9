from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from beliefagent.cli import app


def test_domains_json() -> None:
    result = CliRunner().invoke(app, ["domains", "--json"])
    assert result.exit_code == 0
    names = {d["name"] for d in json.loads(result.stdout)["domains"]}
    assert {"flight", "hotel", "bigfive", "flight8"} <= names


def test_bad_input_exits_2_with_field_and_value() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "beliefagent.cli", "teacher-eval", "--domain", "submarine"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "domain='submarine'" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "beliefagent.cli", "teacher-eval", "--users", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "users=0" in proc.stderr
