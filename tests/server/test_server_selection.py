"""Selection over HTTP: ``candidates`` instead of ``options``, through the official client."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest
from server_helpers import ANSWER, FLIGHT, stub_registry

from beliefagent.adapters import StubServer
from beliefagent.belief import SelectionConfig
from beliefagent.teachers import BayesianTeacher
from beliefagent.trajectories import read_trajectories


def _candidates(n: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    while True:
        c = rng.integers(0, FLIGHT.n_levels, size=(n, FLIGHT.n_features))
        if len(np.unique(c, axis=0)) == n:
            return c


def _texts(levels: np.ndarray) -> list[str]:
    return [FLIGHT.render_option(row, i).split(": ", 1)[1] for i, row in enumerate(levels)]


def test_candidates_choose_the_options_and_are_logged(stub: StubServer, serve, tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    pools = [_candidates(seed=s) for s in range(3)]
    choices = [2, 0]
    client = None
    exts = []
    with serve(stub_registry(stub), log=log) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=30)
        for r, pool in enumerate(pools):
            ext: dict = {"session_id": "sel", "candidates": _texts(pool), "selection": "eig"}
            if r > 0:
                ext["choice"] = choices[r - 1]
            reply = client.chat.completions.create(
                model=stub.model,
                messages=[{"role": "user", "content": "Which flight?"}],
                extra_body={"beliefagent": ext},
            )
            assert reply.choices[0].message.content == ANSWER
            exts.append(reply.model_extra["beliefagent"])
        httpx.post(f"{url}/v1/beliefagent/sessions/sel/choice", json={"choice": 1})
    # the upstream saw the chosen options, numbered as shown
    prompt = stub.requests[0]["messages"][-1]["content"]
    for text in exts[0]["selected"]["options"]:
        assert text in prompt
    # the server's choice is the library's, on the same belief
    teacher = BayesianTeacher(FLIGHT)
    for ext, pool, choice in zip(exts, pools, [*choices, 1], strict=True):
        sel = ext["selected"]
        want = teacher.select(pool, config=SelectionConfig("eig"))
        assert sel["indices"] == want.indices and sel["strategy"] == "eig"
        assert sel["information_gain"] == pytest.approx(want.information_gain)
        assert ext["information_gain"] == pytest.approx(want.information_gain)
        teacher.observe(pool[want.indices], choice)
    turns = [r for r in read_trajectories(log).records if r.kind == "turn"]
    assert len(turns) == 3
    for t, ext, pool in zip(turns, exts, pools, strict=True):
        assert t.selection is not None and t.selection.indices == ext["selected"]["indices"]
        assert [c.features for c in t.selection.candidates] == [
            FLIGHT.feature_values(row) for row in pool
        ]


@pytest.mark.parametrize(
    ("ext", "param"),
    [
        ({"candidates": ["departure time: 02:00 PM"] * 4}, "beliefagent.candidates[0]"),
        ({"candidates": [{"price": 370}] * 3}, "beliefagent.candidates[0].departure_time"),
        ({"candidates": "Flight 1"}, "beliefagent.candidates"),
        ({"candidates": []}, "beliefagent.candidates"),
        ({"candidates": "dup"}, "beliefagent.candidates[0]"),
        ({"candidates": "two"}, "beliefagent.candidates"),
        ({"candidates": "ok", "selection": "best"}, "beliefagent.selection"),
        ({"candidates": "ok", "options": "ok"}, "beliefagent.candidates"),
        ({"options": "ok", "selection": "eig"}, "beliefagent.selection"),
    ],
)
def test_bad_candidates_are_400_naming_the_field(stub: StubServer, serve, ext, param) -> None:
    pool = _texts(_candidates(6, seed=4))
    fill = {"ok": pool, "dup": [pool[0], pool[1], pool[0]], "two": pool[:2]}
    ext = {k: fill.get(v, v) if isinstance(v, str) else v for k, v in ext.items()}
    body = {
        "model": stub.model,
        "messages": [{"role": "user", "content": "?"}],
        "beliefagent": {"session_id": "bad", **ext},
    }
    with serve(stub_registry(stub)) as url:
        resp = httpx.post(f"{url}/v1/chat/completions", json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == param
        # nothing was opened: a good request starts at round 0
        body["beliefagent"] = {"session_id": "bad", "candidates": pool}
        ok = httpx.post(f"{url}/v1/chat/completions", json=body)
        assert ok.status_code == 200 and ok.json()["beliefagent"]["round"] == 0
