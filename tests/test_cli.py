from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_compare_teaching_bad_arm_and_budget_exit_2(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "beliefagent.cli", "compare-teaching", "--quick"]
    proc = subprocess.run(
        [*base, "--arm", "magic", "--out", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "arm=" in proc.stderr and "magic" in proc.stderr
    proc = subprocess.run(
        [*base, "--steps", "0", "--out", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "steps=0" in proc.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
