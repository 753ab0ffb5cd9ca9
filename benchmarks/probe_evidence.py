"""Is the evidence in the model's hidden states? Linear probes on the ``price-random`` rung.

In ``price-random`` (``benchmarks/teaching_ladder.py``) each user wants the cheapest or the
dearest flight, and only the feedback on round 1 says which. A model that answers round 2 well
must carry that bit to the position where it answers round 2. This script renders held-out
dialogues exactly as the ladder trains on them (compact style, the teacher's round-1 answer and
the user's feedback), runs the model once over each round-2 prompt, and fits one linear probe
per layer on the hidden state at the answer position:

    sign     does this user want the dearer or the cheaper flight? (from round-1 evidence;
             chance 50 %)
    content  which round-2 option has the highest price code? (from round 2 alone; chance 33 %)
    answer   the right round-2 answer (needs both: the sign applied to round 2's prices)

Probe accuracy is measured on dialogues the probe was not fitted on (ridge least-squares on
one-hot labels over standardised features; the ridge strength, and for ``chosen_layer`` the
layer, chosen by 5-fold cross-validation on the fitting share). A layer where ``sign`` is
decodable while the model still answers at the evidence-free ceiling holds the evidence without
using it; no such layer means the base model does not compute it and fine-tuning must build
that circuit.

    python benchmarks/probe_evidence.py --json [--dialogues 800] [--model DIR | --adapter DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

LADDER = Path(__file__).resolve().parent / "teaching_ladder.py"
RIDGE = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _ladder() -> Any:
    spec = importlib.util.spec_from_file_location("teaching_ladder", LADDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def labels(sessions: list[Any], domain: Any) -> dict[str, np.ndarray]:
    """Per dialogue: ``sign`` (1 = the user prefers higher price codes), ``content`` (the
    round-2 option with the highest code), ``answer`` (the user's round-2 choice)."""
    sign, content, answer = [], [], []
    for _, _, sets, choices in sessions:
        codes = domain.codes(sets)[..., 0]  # (R, O): the one feature
        sign.append(int(codes[0, choices[0]] >= codes[0].max()))
        content.append(int(codes[1].argmax()))
        answer.append(int(choices[1]))
    return {k: np.array(v) for k, v in (("sign", sign), ("content", content), ("answer", answer))}


def usable(sessions: list[Any], domain: Any) -> list[bool]:
    """Dialogues whose round-1 choice tells the sign (its options do not all tie)."""
    return [bool(np.ptp(domain.codes(s[2])[0, :, 0]) > 0) for s in sessions]


def hidden_states(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]]) -> np.ndarray:
    """(N, L+1, H): every layer's hidden state at the position that predicts the answer."""
    import torch

    out = []
    with torch.inference_mode():
        for messages in prompts:
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            hs = model(**ids, output_hidden_states=True).hidden_states
            out.append(torch.stack([h[0, -1] for h in hs]).float().numpy())
    return np.stack(out)


def _ridge_fit(x: np.ndarray, y: np.ndarray, k: int, lam: float) -> np.ndarray:
    onehot = np.eye(k)[y]
    xb = np.hstack([x, np.ones((len(x), 1))])
    reg = lam * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the bias
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ onehot)


def _ridge_predict(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (np.hstack([x, np.ones((len(x), 1))]) @ w).argmax(-1)


def probe_accuracy(
    x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, k: int
) -> tuple[float, float]:
    """(cross-validated accuracy on the fitting share, held-out accuracy), in %, of a ridge
    probe whose ridge strength is chosen by 5-fold cross-validation."""
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    xf, xt = (x_fit - mu) / sd, (x_test - mu) / sd
    folds = np.arange(len(xf)) % 5
    best, best_lam = -1, RIDGE[0]
    for lam in RIDGE:
        hits = 0
        for f in range(5):
            w = _ridge_fit(xf[folds != f], y_fit[folds != f], k, lam)
            hits += int((_ridge_predict(xf[folds == f], w) == y_fit[folds == f]).sum())
        if hits > best:
            best, best_lam = hits, lam
    w = _ridge_fit(xf, y_fit, k, best_lam)
    test = float((_ridge_predict(xt, w) == y_test).mean())
    return round(100 * best / len(xf), 1), round(100 * test, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from beliefagent.adapters.models import load_model
    from beliefagent.export import build_examples
    from beliefagent.prompts import DialoguePrompts

    torch.set_num_threads(args.threads)
    ladder = _ladder()
    domain = ladder.rung_domain("price-random")
    rng = np.random.default_rng(args.seed)
    sessions = ladder.make_sessions(domain, "price-random", args.dialogues, rng, 3, 10**7)
    sessions = [s for s, ok in zip(sessions, usable(sessions, domain), strict=True) if ok]
    prompts = DialoguePrompts.for_domain(domain, "compact")
    examples, _ = build_examples(domain, sessions, "bayes", seed=0, prompts=prompts)
    by_id = {e.to_chat()["user_id"]: e.to_chat() for e in examples}
    kept = [s for s in sessions if s[1] in by_id]
    round2 = [by_id[s[1]]["messages"][:3] for s in kept]  # up to the round-2 question
    y = labels(kept, domain)
    model, tokenizer = load_model(args.model, args.adapter, dtype="float32")
    t0 = time.perf_counter()
    x = hidden_states(model, tokenizer, round2)  # (N, L+1, H)
    n_fit = int(0.75 * len(x))
    layers, chosen = {}, {}
    for name, k in (("sign", 2), ("content", 3), ("answer", 3)):
        accs = [
            probe_accuracy(x[:n_fit, layer], y[name][:n_fit], x[n_fit:, layer], y[name][n_fit:], k)
            for layer in range(x.shape[1])
        ]
        layers[name] = [test for _, test in accs]
        # the layer is chosen on the fitting share (cross-validation), then scored held out
        best = int(np.argmax([cv for cv, _ in accs]))
        chosen[name] = {"layer": best, "cv": accs[best][0], "heldout": accs[best][1]}
    majority = {
        n: round(100 * float(np.bincount(v[n_fit:]).max() / len(v[n_fit:])), 1)
        for n, v in y.items()
    }
    return {
        "model": args.model or "bundled SmolLM2-135M-Instruct",
        "adapter": args.adapter,
        "dialogues": len(x),
        "fit": n_fit,
        "test": len(x) - n_fit,
        "layers": x.shape[1],  # the embeddings, then each block's output
        "probe_accuracy_by_layer": layers,  # held out, every layer
        "chosen_layer": chosen,  # picked by cross-validation on the fitting share
        "majority_baseline": majority,
        "forward_s": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dialogues", type=int, default=800)
    p.add_argument("--model", default=None, help="a model folder (default: the bundled model)")
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder on top")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        for name, accs in result["probe_accuracy_by_layer"].items():
            c = result["chosen_layer"][name]
            print(f"{name:>8}: {c['heldout']} % held out at layer {c['layer']}; by layer {accs}")
        print(f"majority baseline: {result['majority_baseline']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
