"""Wrap an OpenAI-compatible chat endpoint with the belief middleware and run a 5-round flight
dialogue with a simulated user, printing each turn's LLM answer, Bayesian answer and entropy.

    python examples/wrap_chatbot.py --base-url https://api.openai.com/v1 --model gpt-4.1-mini
    python examples/wrap_chatbot.py --base-url http://localhost:8000/v1 --model my-vllm-model
    python examples/wrap_chatbot.py        # no endpoint given: the bundled SmolLM2 is served on
                                           # loopback and reached over real HTTP

The API key is read from $OPENAI_API_KEY (or --api-key-env); it never reaches the log.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from beliefagent.adapters import (
    GenerationSettings,
    LocalBackend,
    OpenAICompatibleBackend,
    RetryingBackend,
    StubCompletion,
    StubServer,
)
from beliefagent.domains import load_domain
from beliefagent.middleware import Session
from beliefagent.middleware.runner import run_dialogue
from beliefagent.teachers import SimulatedUser
from beliefagent.trajectories import read_trajectories


@contextlib.contextmanager
def local_endpoint() -> Iterator[tuple[str, str]]:
    """The bundled SmolLM2 behind a loopback OpenAI-compatible server (with label logprobs)."""
    local = LocalBackend()

    def reply(messages):  # type: ignore[no-untyped-def]
        settings = GenerationSettings(
            max_tokens=24, candidates=("1", "2", "3"), answer_prefix="The best option is Flight "
        )
        r = local.complete(messages, settings)
        return StubCompletion(text=r.text, label_logprobs=r.candidate_logprobs)

    with StubServer(reply) as srv:
        yield srv.base_url, "smollm2-135m-instruct"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", help="OpenAI-compatible endpoint (default: local SmolLM2)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--api-key-env", default="OPENAI_API_KEY")
    ap.add_argument("--policy", default="llm", choices=["llm", "bayes", "hint", "guard"])
    ap.add_argument("--user", type=int, default=123, help="which of the 624 users (0..623)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", type=Path, default=None, help="trajectory log (default: a temp file)")
    args = ap.parse_args()

    flight = load_domain("flight")
    rng = np.random.default_rng(args.seed)
    user = SimulatedUser(flight, flight.hypothesis_weights()[args.user], seed=args.seed)
    log = args.log or Path(tempfile.mkdtemp()) / "wrap_chatbot.jsonl"
    endpoint = (
        contextlib.nullcontext((args.base_url, args.model)) if args.base_url else local_endpoint()
    )
    with endpoint as (base_url, model):
        backend = RetryingBackend(
            OpenAICompatibleBackend(
                model or "default", base_url=base_url, api_key_env=args.api_key_env
            )
        )
        session = Session(flight, backend, policy=args.policy, log=log, user_id=str(args.user))
        print(f"user weights {dict(zip(flight.feature_names, user.weights.tolist(), strict=True))}")
        print(
            f"{'round':>5}  {'LLM':>5}  {'Bayes':>5}  {'shown':>5}  {'user':>4}  "
            f"{'entropy':>7}  LLM reply"
        )

        def show(turn, choice):  # type: ignore[no-untyped-def]
            def lab(i):  # type: ignore[no-untyped-def]
                return "-" if i is None else f"F{i + 1}"

            entropy = turn.belief.entropy if turn.belief else math.nan
            reply = turn.raw_replies[-1] if turn.raw_replies else ""
            print(
                f"{turn.round + 1:>5}  {lab(turn.llm_choice):>5}  {lab(turn.bayes_choice):>5}  "
                f"{lab(turn.shown_choice):>5}  {lab(choice):>4}  {entropy:7.3f}  {reply!r}"
            )

        run_dialogue(session, user, flight.random_option_sets(rng, 5), on_turn=show)
    read = read_trajectories(log)
    print(f"log: {log} ({len(read.records)} records, {len(read.torn)} torn)")


if __name__ == "__main__":
    main()
