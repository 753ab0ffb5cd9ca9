"""The active-elicitation evaluation mode: tasks, the summary, and the CLI JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from beliefagent.belief import EpsilonGreedy, NoiseFree
from beliefagent.domains import load_domain
from beliefagent.errors import ConfigError
from beliefagent.eval.command import eval_command
from beliefagent.eval.harness import EvalConfig, run_eval
from beliefagent.eval.selection import make_selection_task, random_pool
from beliefagent.eval.tasks import teacher_traces

FLIGHT = load_domain("flight")


def _task(strategy: str, **kw):
    args = dict(pool=15, users=12, heldout_sets=10, seed=3, likelihood=NoiseFree())
    args.update(kw)
    return make_selection_task(FLIGHT, strategy=strategy, **args)


def test_random_pool_is_distinct_and_validated() -> None:
    pool = random_pool(FLIGHT, np.random.default_rng(0), 200)
    assert pool.shape == (200, 4) and len(np.unique(pool, axis=0)) == 200
    with pytest.raises(ConfigError, match="pool"):
        random_pool(FLIGHT, np.random.default_rng(0), 2)


def test_strategies_share_users_pools_and_heldout() -> None:
    tasks = {s: _task(s) for s in ("random", "eig", "reward", "mixed")}
    base = tasks["random"]
    for t in tasks.values():
        assert t.user_ids == base.user_ids
        np.testing.assert_array_equal(t.heldout, base.heldout)
        np.testing.assert_array_equal(t.truth, base.truth)
        assert t.regret.shape == (12, 5) and (t.regret >= -1e-12).all()
    # regret = best in pool - picked; the shown sets come from the same pools
    x = FLIGHT.codes(base.rounds)  # (U, R, O, F)
    picked = np.take_along_axis(
        np.einsum("urof,uf->uro", x, base.user_weights), base.choices[..., None], -1
    )[..., 0]
    best = base.regret + picked  # (U, R)
    for t in tasks.values():
        xt = FLIGHT.codes(t.rounds)
        pt = np.take_along_axis(
            np.einsum("urof,uf->uro", xt, t.user_weights), t.choices[..., None], -1
        )[..., 0]
        np.testing.assert_allclose(t.regret + pt, best, atol=1e-9)


def test_noise_free_users_pick_their_favourite_shown() -> None:
    t = _task("eig")
    r = np.einsum("urof,uf->uro", FLIGHT.codes(t.rounds), t.user_weights)
    chosen = np.take_along_axis(r, t.choices[..., None], -1)[..., 0]
    np.testing.assert_allclose(chosen, r.max(-1), atol=1e-9)
    assert (np.diff(t.entropy, axis=1) <= 1e-9).all()  # noise-free: entropy never grows


def test_eig_learns_faster_than_random_and_traces_agree() -> None:
    eig, rnd = _task("eig", users=40), _task("random", users=40)
    acc = {}
    for name, t in (("eig", eig), ("random", rnd)):
        traces = teacher_traces(t, NoiseFree())
        hits = np.stack([(tr.heldout_pred == t.truth[u]).mean(1) for u, tr in enumerate(traces)])
        acc[name] = hits.mean(0)
    assert acc["eig"][3] > acc["random"][3]
    assert eig.entropy[:, 3].mean() < rnd.entropy[:, 3].mean()


def test_noisy_users_sometimes_err() -> None:
    t = _task("random", user_epsilon=0.5, likelihood=EpsilonGreedy(0.5), users=20)
    r = np.einsum("urof,uf->uro", FLIGHT.codes(t.rounds), t.user_weights)
    chosen = np.take_along_axis(r, t.choices[..., None], -1)[..., 0]
    assert (chosen < r.max(-1) - 1e-9).any()


def test_run_eval_adds_regret_and_selection(tmp_path: Path) -> None:
    config = EvalConfig(users=6, heldout_sets=5, selection="mixed", pool=10, seed=1)
    run = run_eval(config, ["bayes", "random"], tmp_path / "run")
    sel = run.summary["selection"]
    assert sel["strategy"] == "mixed" and sel["pool"] == 10 and len(sel["entropy_by_round"]) == 6
    for a in run.summary["assistants"]:
        assert len(a["regret_by_round"]) == 5 and len(a["accuracy_by_round"]) == 6
    assert config.run_key() != EvalConfig(users=6, heldout_sets=5, seed=1).run_key()
    assert EvalConfig().run_key() == EvalConfig(pool=50).run_key()  # inert without selection


def test_bad_selection_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="strategy"):
        run_eval(EvalConfig(users=2, selection="best"), ["bayes"], tmp_path / "a")
    with pytest.raises(ConfigError, match="user_epsilon"):
        run_eval(EvalConfig(users=2, user_epsilon=0.1), ["bayes"], tmp_path / "b")
    with pytest.raises(ConfigError, match="domain"):
        run_eval(EvalConfig(domain="bigfive", selection="eig"), ["bayes"], tmp_path / "c")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)
    return app


@pytest.mark.parametrize("strategy", ["random", "eig", "reward", "mixed"])
def test_cli_json_contract(tmp_path: Path, strategy: str) -> None:
    args = ["eval", "--domain", "flight", "--assistant", "bayes", "--selection", strategy]
    args += ["--pool", "12", "--users", "5", "--heldout-sets", "5", "--json", "--no-plots"]
    result = CliRunner().invoke(_app(), [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    a = data["assistants"][0]
    assert len(a["accuracy_by_round"]) == 6 and len(a["regret_by_round"]) == 5
    assert data["selection"]["strategy"] == strategy


def test_suite_writes_the_side_by_side_report(tmp_path: Path) -> None:
    suite = tmp_path / "sel.toml"
    runs = "".join(
        f'[[runs]]\nname = "{s}"\nselection = "{s}"\npool = 10\nusers = 4\nheldout_sets = 4\n\n'
        for s in ("random", "mixed")
    )
    suite.write_text(f'name = "sel"\nassistants = ["bayes"]\n\n{runs}')
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _app(), ["eval", "--suite", str(suite), "--out", str(out), "--json", "-q"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["selection"]["strategy"] for r in data["runs"]] == ["random", "mixed"]
    names = sorted(Path(f).name for f in data["selection_report"])
    assert names == [
        "selection.md",
        "selection_accuracy_by_round.png",
        "selection_regret_by_round.png",
    ]
    report = (out / "selection.md").read_text()
    assert "| random | 10 | 0 | bayes |" in report and "| mixed | 10 | 0 | bayes |" in report


def test_rounds_to_target() -> None:
    from beliefagent.eval.selection_report import rounds_to

    assert rounds_to([33.0, 60.0, 81.0, 90.0]) == 2
    assert rounds_to([33.0, 80.9]) is None
