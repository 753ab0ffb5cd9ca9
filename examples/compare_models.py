"""Compare an API-style model, the local default model and the Bayesian teacher side by side.

By default no key and no network are needed: the "API" is a real OpenAI-compatible HTTP server
on loopback (``StubServer``) whose answers come from the bundled SmolLM2, so the API path
(official openai client, logprobs, concurrency) is exercised end to end. Point it at a real
endpoint instead with ``--base-url`` and ``--model`` (key from ``$OPENAI_API_KEY``).

    python examples/compare_models.py                       # tiny, CPU: 2 users x 3 sets
    python examples/compare_models.py --users 20 --heldout-sets 20 --out eval/runs/compare
    python examples/compare_models.py --base-url http://localhost:8000/v1 --model my-model

The report (results.json, report.md, PNGs) lands in ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from beliefagent.adapters import GenerationSettings, LocalBackend, StubCompletion, StubServer
from beliefagent.eval import EvalConfig, run_eval, write_report

PROBE = "On a scale from 1"


@contextlib.contextmanager
def local_api(model: str) -> Iterator[str]:
    """An OpenAI-compatible server on loopback answering with the local SmolLM2."""
    backend = LocalBackend(name="api-stub")

    def reply(messages: list[dict[str, str]]) -> StubCompletion:
        probe = PROBE in messages[-1]["content"]
        settings = GenerationSettings(
            max_tokens=24,
            candidates=("1", "2", "3", "4", "5") if probe else ("1", "2", "3"),
            answer_prefix="" if probe else "The best option is Flight ",
        )
        answer = backend.complete(messages, settings)
        return StubCompletion(answer.text, label_logprobs=answer.candidate_logprobs)

    with StubServer(reply, model=model) as server:
        yield server.base_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", help="a real OpenAI-compatible endpoint (default: stub)")
    parser.add_argument("--model", default="smollm2-over-http", help="model name to request")
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--heldout-sets", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("eval/runs/compare-models"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    config = EvalConfig(
        users=args.users,
        heldout_sets=args.heldout_sets,
        seed=args.seed,
        concurrency=args.concurrency,
    )
    with contextlib.ExitStack() as stack:
        url = args.base_url or stack.enter_context(local_api(args.model))
        api = f"openai:{args.model}@{url}"
        run = run_eval(config, ["bayes", "local", api], args.out)
    files = write_report(run.summary, args.out)
    print(f"held-out accuracy (%) after rounds 0..{run.summary['rounds']}:")
    for a in run.summary["assistants"]:
        acc = " ".join(f"{v:5.1f}" for v in a["accuracy_by_round"])
        print(f"  {a['name'][:48]:<48} {acc}   invalid {a['invalid_rate']:.1f}%")
    print(f"  {'chance':<48} {run.summary['chance']:5.1f}")
    print("report:", *[str(f) for f in files], sep="\n  ")


if __name__ == "__main__":
    main()
