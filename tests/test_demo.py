"""The main job end to end (slow: trains and evaluates the real bundled model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from beliefagent.demo import run_demo
from beliefagent.errors import ConfigError


@pytest.mark.slow
def test_quick_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo", quick=True, seed=0)
    names = [a["name"] for a in summary["assistants"]]
    assert names == ["bayes", "random", "local", "tuned"]
    assert [a["name"] for a in summary["through_server"]] == ["bayes", "tuned-via-server"]
    for a in summary["assistants"]:
        assert len(a["accuracy_by_round"]) == 6
        assert all(0 <= v <= 100 for v in a["accuracy_by_round"])
    bayes = summary["assistants"][0]["accuracy_by_round"]
    assert bayes[5] >= bayes[0]
    out = tmp_path / "demo"
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "report" / "report.md").is_file()
    assert (out / "report" / "accuracy_by_round.png").stat().st_size > 1000
    assert json.loads((out / "demo.json").read_text())["finetune"]["steps"] == 2
    # the tuned model really answered through the server: its results are in that run's log
    log = (out / "eval-server" / "results.jsonl").read_text()
    assert "tuned-via-server" in log
    assert (out / "report-server" / "report.md").is_file()


def test_demo_refuses_a_used_folder(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError) as info:
        run_demo(tmp_path / "x", quick=True)
    assert info.value.field == "out"
