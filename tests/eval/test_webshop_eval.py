"""Web shopping through ``beliefagent eval --domain webshop``: LLM assistants per category and
pooled, between the random and best-score-oracle bounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from beliefagent.adapters import ScriptedBackend
from beliefagent.cli import app
from beliefagent.datasets.webshop import find_webshop_categories, load_webshop_category
from beliefagent.errors import ConfigError
from beliefagent.eval.webshop import WebshopConfig, run_webshop_eval, write_webshop_report


@pytest.mark.official
def test_always_first_product_matches_the_files(webshop_dir: Path, tmp_path: Path) -> None:
    seen: list[str] = []

    def first(messages: list) -> str:
        seen.append(messages[-1]["content"])
        return "The best option is Product 1."

    config = WebshopConfig(str(webshop_dir), str(webshop_dir), users=2, heldout_sets=5)
    summary = run_webshop_eval(
        config, ["random", "oracle", "first"], tmp_path, backends={"first": ScriptedBackend(first)}
    )
    # the independent expectation, from the files: the share of sets whose pick is Product 1
    rounds, held = [], []
    for _, inter, h in find_webshop_categories(webshop_dir, webshop_dir):
        users = sorted(load_webshop_category(inter, h).users, key=lambda u: (not u.heldout, u.idx))
        for u in users[:2]:
            rounds.append([100.0 * (s.user_idx == 0) for s in u.rounds])
            if u.heldout:
                held.append(100 * np.mean([s.user_idx == 0 for s in u.heldout[:5]]))
    by_name = {a["name"]: a for a in summary["pooled"]["assistants"]}
    assert summary["n_categories"] == 3 and summary["n_users"] == 6
    assert np.allclose(
        by_name["first"]["dialogue_accuracy_by_round"], np.mean(rounds, axis=0), atol=0.01
    )
    assert np.allclose(by_name["first"]["accuracy_by_round"], [np.mean(held)] * 6, atol=0.01)
    assert by_name["first"]["invalid_rate"] == 0.0
    assert by_name["oracle"]["accuracy_by_round"] == [100.0] * 6
    assert by_name["random"]["accuracy_by_round"] == [pytest.approx(100 / 3, abs=0.01)] * 6
    cats = {c["category"]: c for c in summary["categories"]}
    assert cats["mens_athletic_shoes"]["n_users_heldout"] == 0
    assert cats["mens_boots"]["assistants"][2]["n_users_heldout"] == 1
    # the dialogue feeds back the user's pick against the model's answer
    assert any("Your option Product 1 is" in text for text in seen)
    assert any(text.startswith("Help me select the best products") for text in seen)
    files = write_webshop_report(summary, tmp_path / "report")
    assert (tmp_path / "report" / "accuracy_by_round.png") in files
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Pooled over categories" in text and "## mens_boots" in text
    # resuming: nothing is asked again
    seen.clear()
    again = run_webshop_eval(
        config, ["random", "oracle", "first"], tmp_path, backends={"first": ScriptedBackend(first)}
    )
    assert not seen and again["resumed_results"] == 18


def test_policies_and_bayes_are_refused(tmp_path: Path) -> None:
    for name in ("bayes", "local#guard"):
        with pytest.raises(ConfigError) as info:
            run_webshop_eval(WebshopConfig(str(tmp_path)), [name], tmp_path)
        assert info.value.field == "assistant" and "no Bayesian teacher" in str(info.value)


@pytest.mark.official
def test_cli_webshop_json(webshop_dir: Path, tmp_path: Path) -> None:
    args = ["eval", "--domain", "webshop", "--interactions", str(webshop_dir)]
    args += ["--heldout", str(webshop_dir), "--users", "1", "--heldout-sets", "3"]
    args += ["--category", "mens_boots", "--out", str(tmp_path), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [c["category"] for c in data["categories"]] == ["mens_boots"]
    assert {a["name"] for a in data["pooled"]["assistants"]} == {"random", "oracle"}
    assert (tmp_path / "report.md").is_file()
