"""A backend that runs a transformers causal LM in process (the embedded default, or any local
model folder), optionally with a PEFT (LoRA) adapter on top.

Generation is the chat template plus greedy decoding (or sampling when ``temperature > 0``).

Scoring. A candidate ``c`` is scored as the assistant's answer: with ``prompt`` the chat
template rendered with ``add_generation_prompt=True`` (plus an optional fixed ``answer_prefix``
such as ``"The best option is Flight "``), the score is ``sum_k log p(t_k | t_<k)`` over the
tokens ``t_k`` of ``tokenize(prompt + c)`` that follow the tokens of ``tokenize(prompt)``.
(Should the boundary merge, e.g. ``"... Flight"`` + ``" 1"``, the merged token counts as part of
the answer.)

Sharing work. All the sequences to score in one call are tokenized first; their longest common
token prefix is run through the model once, and its KV cache is expanded to the batch of
distinct remainders. Remainders that differ only in their last token (``"1"``, ``"2"``, ``"3"``
after the same prompt) share one forward row and are read from its last next-token
distribution, so the usual label-scoring case costs ONE forward pass of the prompt. In
:meth:`LocalBackend.score_queries`, several queries that follow the same conversation history
reuse the history's cache: one pass over the history, one batched pass over the query
suffixes. Because the shared prefix is computed from the token ids themselves, a chat template
that renders the history differently once more turns follow simply shares less; the cache is
never reused for tokens that differ.

Across calls. The backend keeps the KV cache of the last shared prefix it computed (one batch
row, ``prefix_cache=True``, the default). A later call whose shared prefix starts with the same
tokens (the next round of a dialogue: the same history plus one more turn) runs only the new
tokens. The reuse is exact: the cache of a token depends on the tokens before it only.

Precision. ``dtype="auto"`` (the default) loads the weights in bfloat16 where the hardware
computes bf16 natively (a CPU with AVX512-BF16 or AMX, a bf16-capable GPU; see
:func:`~beliefagent.adapters.models.resolve_dtype`), else float32. Log-probabilities are always
normalised in float32.
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from beliefagent.adapters.base import GenerationSettings, Message, Reply, validate_messages
from beliefagent.adapters.models import (
    DEFAULT_MODEL_NAME,
    adapter_prompt_style,
    check_prompt_style,
    load_model,
    resolve_dtype,
    warn_if_emulated_bf16,
)
from beliefagent.errors import ConfigError, InputError

if TYPE_CHECKING:
    import os

    import torch

    from beliefagent.adapters.local_stream import TokenStream

__all__ = ["LocalBackend"]

logger = logging.getLogger(__name__)


class LocalBackend:
    """A transformers model in process.

    Args:
        model_path: ``None`` for the embedded SmolLM2-135M-Instruct; else a local model folder
            or ``.gguf`` file (see :func:`~beliefagent.adapters.models.load_model`).
        adapter_path: a PEFT adapter folder to apply.
        device: a torch device string.
        name: label for logs and reports.
        dtype: the weights' type: ``auto`` (bf16 where native, else float32), ``float32``,
            ``bfloat16`` or ``float16``.
        prefix_cache: keep the last shared prefix's KV cache for the next call (see the module
            docstring; it holds one prompt's cache in memory).
        prompt_style: the dialogue rendering sessions and the eval harness use with this model
            (one of :data:`beliefagent.prompts.PROMPT_STYLES`); default: the style a tuned
            adapter records, else ``"paper"``.

    Use :meth:`from_loaded` to wrap a model and tokenizer already in memory. Calls are
    serialised with a lock, so one backend may be shared between threads.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        adapter_path: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        *,
        name: str = "local",
        dtype: str = "auto",
        prefix_cache: bool = True,
        prompt_style: str | None = None,
    ) -> None:
        resolved = resolve_dtype(dtype, device)
        warn_if_emulated_bf16(dtype, device)
        lm, tokenizer = load_model(model_path, adapter_path, device=device, dtype=resolved)
        self._setup(
            lm,
            tokenizer,
            name=name,
            model_name=DEFAULT_MODEL_NAME if model_path is None else str(model_path),
            adapter=None if adapter_path is None else str(adapter_path),
            prefix_cache=prefix_cache,
        )
        if prompt_style is not None:
            self.prompt_style = check_prompt_style(prompt_style)

    @classmethod
    def from_loaded(
        cls,
        lm: Any,
        tokenizer: Any,
        *,
        model_name: str,
        adapter: str | None = None,
        name: str = "local",
        prefix_cache: bool = True,
    ) -> LocalBackend:
        """Wrap an already loaded causal LM (``PreTrainedModel`` or ``PeftModel``) and tokenizer
        (in whatever dtype it has). With ``prefix_cache``, do not change the model's weights
        (e.g. toggle an adapter) while the backend is in use: the kept cache would be stale."""
        backend = cls.__new__(cls)
        backend._setup(
            lm,
            tokenizer,
            name=name,
            model_name=model_name,
            adapter=adapter,
            prefix_cache=prefix_cache,
        )
        return backend

    def _setup(
        self,
        lm: Any,
        tokenizer: Any,
        *,
        name: str,
        model_name: str,
        adapter: str | None,
        prefix_cache: bool = True,
    ) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ConfigError(
                "the tokenizer has no chat template", field="model_path", value=model_name
            )
        self.name = name
        self.model = model_name
        self.adapter = adapter
        # the rendering a tuned adapter was trained on; sessions and the eval harness ask in it
        self.prompt_style = adapter_prompt_style(adapter)
        self.lm = lm
        self.tokenizer = tokenizer
        self._lock = threading.Lock()
        base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
        params = inspect.signature(base.forward).parameters
        # transformers 5 renamed ``past_key_values`` to ``cache``; older releases lack
        # ``logits_to_keep`` (then every position's logits are computed).
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = next(
            (k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None
        )
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._prefix_cache = prefix_cache
        self._kept: tuple[list[int], Any] | None = None  # (token ids, batch-1 KV cache)

    @property
    def device(self) -> torch.device:
        """Where the model's weights live."""
        return next(self.lm.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype."""
        return next(self.lm.parameters()).dtype

    # ----------------------------------------------------------------------------- generation

    def complete(self, messages: Sequence[Message], settings: GenerationSettings) -> Reply:
        """Generate a reply; with ``settings.candidates``, also score them (module docstring)."""
        import torch

        checked = validate_messages(messages)
        start = time.perf_counter()
        prompt = self._render(checked, add_generation_prompt=True)
        prompt_ids = self._encode(prompt)
        with self._lock, torch.inference_mode():
            generated = self._generate(prompt_ids, settings)
            scores = (
                self._score_texts(prompt + settings.answer_prefix, list(settings.candidates))
                if settings.candidates
                else None
            )
        content_ids = generated
        finish = "length" if len(generated) >= settings.max_tokens else "stop"
        if generated and generated[-1] in self._eos_ids():
            content_ids, finish = generated[:-1], "stop"
        text = self.tokenizer.decode(content_ids, skip_special_tokens=True)
        cut = min((i for s in settings.stop if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return Reply(
            text=text,
            model=self.model,
            finish_reason=finish,
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(generated),
            latency_s=time.perf_counter() - start,
            candidate_logprobs=scores,
        )

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> TokenStream:
        """Generate a reply token by token: iterate the returned
        :class:`~beliefagent.adapters.local_stream.TokenStream` for text pieces as they are
        generated; its ``reply`` is the finished :class:`Reply` (the same text :meth:`complete`
        returns with greedy decoding). No candidate scoring."""
        from beliefagent.adapters.local_stream import TokenStream

        return TokenStream(self, validate_messages(messages), settings)

    def _generate(
        self, prompt_ids: list[int], settings: GenerationSettings, **extra: Any
    ) -> list[int]:
        import torch

        ids = torch.tensor([prompt_ids], device=self.device)  # (1, T)
        kwargs: dict[str, Any] = {
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": settings.max_tokens,
            "pad_token_id": self._pad_id,
            "do_sample": settings.temperature > 0,
        }
        if settings.temperature > 0:
            kwargs.update(temperature=settings.temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if settings.stop:
            kwargs.update(stop_strings=list(settings.stop), tokenizer=self.tokenizer)
        kwargs.update(extra)
        if settings.temperature > 0 and settings.seed is not None:
            devices = [self.device] if self.device.type != "cpu" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(settings.seed)
                out = self.lm.generate(ids, **kwargs)
        else:
            out = self.lm.generate(ids, **kwargs)
        return [int(t) for t in out[0, len(prompt_ids) :]]

    def _eos_ids(self) -> set[int]:
        eos = getattr(getattr(self.lm, "generation_config", None), "eos_token_id", None)
        ids = set(eos) if isinstance(eos, list | tuple) else ({eos} if eos is not None else set())
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    # -------------------------------------------------------------------------------- scoring

    def score(
        self, messages: Sequence[Message], candidates: Sequence[str], answer_prefix: str = ""
    ) -> dict[str, float]:
        """Log-probability of each candidate as the assistant's answer to ``messages``, after
        ``answer_prefix`` (no generation)."""
        import torch

        cands = _check_candidates(candidates)
        prompt = self._render(validate_messages(messages), add_generation_prompt=True)
        with self._lock, torch.inference_mode():
            return self._score_texts(prompt + answer_prefix, cands)

    def score_queries(
        self,
        history: Sequence[Message],
        queries: Sequence[Sequence[Message]],
        candidates: Sequence[str],
        answer_prefix: str = "",
    ) -> list[dict[str, float]]:
        """Score ``candidates`` after each of several ``queries`` that follow the same
        ``history``: ``result[i][c]`` is the log-probability of answer ``c`` (after
        ``answer_prefix``) to the conversation ``history + queries[i]``.

        The history is run through the model once and its KV cache shared by all queries (see
        the module docstring); the numbers equal scoring each conversation on its own.
        """
        import torch

        cands = _check_candidates(candidates)
        if not queries:
            return []
        hist = validate_messages(history) if history else []
        contexts = []
        for i, query in enumerate(queries):
            if not query:
                raise InputError("must contain at least one message", field=f"queries[{i}]")
            contexts.append(
                self._render(hist + validate_messages(query), add_generation_prompt=True)
                + answer_prefix
            )
        if hist:
            hist_ids = self._encode(self._render(hist, add_generation_prompt=False))
            first = self._encode(contexts[0])
            if first[: len(hist_ids)] != hist_ids:
                logger.debug(
                    "%s: the chat template renders the history differently when turns follow;"
                    " sharing only the common token prefix",
                    self.name,
                )
        with self._lock, torch.inference_mode():
            flat = self._score_contexts(contexts, cands)
        return [dict(zip(cands, row, strict=True)) for row in flat]

    def _score_texts(self, context: str, candidates: list[str]) -> dict[str, float]:
        (row,) = self._score_contexts([context], candidates)
        return dict(zip(candidates, row, strict=True))

    def _score_contexts(self, contexts: list[str], candidates: list[str]) -> list[list[float]]:
        """``[[score(context_i, candidate_j)]]`` computed with shared prefixes."""
        seqs: list[list[int]] = []
        starts: list[int] = []
        for context in contexts:
            context_ids = self._encode(context)
            for candidate in candidates:
                ids = self._encode(context + candidate)
                seqs.append(ids)
                # the answer starts where the tokenization departs from the context's own
                start = _common_prefix_len([context_ids, ids])
                starts.append(max(start, 1))
        flat = self._score_sequences(seqs, starts)
        n = len(candidates)
        return [flat[i * n : (i + 1) * n] for i in range(len(contexts))]

    def _score_sequences(self, seqs: list[list[int]], starts: list[int]) -> list[float]:
        """For each ``s``: ``sum_{k >= starts[s]} log p(seqs[s][k] | seqs[s][:k])``.

        The longest common prefix of all sequences is run once; its cache is expanded to the
        distinct "stems" (remainders without their last token), which run as one batch.
        """
        import torch

        scores = [0.0] * len(seqs)
        # a sequence whose answer adds no token of its own has nothing to score
        todo = [i for i in range(len(seqs)) if starts[i] < len(seqs[i])]
        if len(todo) < len(seqs):
            if todo:
                sub = self._score_sequences([seqs[i] for i in todo], [starts[i] for i in todo])
                for i, value in zip(todo, sub, strict=True):
                    scores[i] = value
            return scores
        # from here on every sequence has >= 2 tokens (starts >= 1)
        n_prefix = min(_common_prefix_len(seqs), min(len(s) for s in seqs) - 1)
        if n_prefix == 0:  # nothing shared at all: split by first token, which shares >= 1
            groups: dict[int, list[int]] = {}
            for i, seq in enumerate(seqs):
                groups.setdefault(seq[0], []).append(i)
            for members in groups.values():
                sub = self._score_sequences(
                    [seqs[i] for i in members], [starts[i] for i in members]
                )
                for i, value in zip(members, sub, strict=True):
                    scores[i] = value
            return scores

        # Pass 1: the shared prefix. Keep logits from the first position any score needs.
        first_pos = min(min(starts) - 1, n_prefix - 1)  # earliest predicting position needed
        keep_prefix = n_prefix - first_pos
        prefix_lp, cache = self._prefix_pass(seqs[0][:n_prefix], first_pos)  # (keep_prefix, V)

        # Pass 2: the distinct non-empty stems, right-padded, on the expanded cache.
        rows = [seq[n_prefix:] for seq in seqs]
        stem_index: dict[tuple[int, ...], int] = {}
        for row in rows:
            if len(row) > 1:
                stem_index.setdefault(tuple(row[:-1]), len(stem_index))
        stem_lp = None
        width = keep_stem = 0
        if stem_index:
            stems = list(stem_index)
            width = max(len(stem) for stem in stems)
            # earliest stem position whose prediction is needed (relative to the stem start)
            first_rel = min(max(st - 1, n_prefix) - n_prefix for st in starts)
            keep_stem = width - min(first_rel, width - 1)
            batch = torch.full((len(stems), width), self._pad_id, device=self.device)  # (S, W)
            for s, stem in enumerate(stems):
                batch[s, : len(stem)] = torch.tensor(stem, device=self.device)
            cache = _expand_cache(cache, len(stems))
            # right padding needs no attention mask: under the causal mask no real token
            # attends to a pad that follows it.
            out = self._forward(batch, cache=cache, keep=keep_stem)
            stem_lp = torch.log_softmax(out.logits.float(), dim=-1)  # (S, keep_stem, V)

        for i, (seq, row) in enumerate(zip(seqs, rows, strict=True)):
            s = stem_index.get(tuple(row[:-1]), -1)
            total = 0.0
            for k in range(starts[i], len(seq)):
                pos = k - 1  # the position whose next-token distribution predicts seq[k]
                if pos < n_prefix:
                    lp = prefix_lp[pos - (n_prefix - keep_prefix), seq[k]]
                else:
                    assert stem_lp is not None
                    rel = pos - n_prefix
                    lp = stem_lp[s, rel - (width - keep_stem), seq[k]]
                total += float(lp)
            scores[i] = total
        return scores

    def _prefix_pass(self, ids: list[int], first_pos: int) -> tuple[torch.Tensor, Any]:
        """Run the prefix ``ids``; return the log-softmax of positions ``first_pos..`` and the
        batch-1 KV cache. Tokens that the kept cache of an earlier call already covers (up to
        ``first_pos``, whose logits the kept cache does not hold) are not run again."""
        import torch

        cache, done = None, 0
        if self._prefix_cache and self._kept is not None:
            kept_ids, kept_cache = self._kept
            done = min(_common_prefix_len([kept_ids, ids]), first_pos)
            if done > 0 and hasattr(kept_cache, "crop"):
                cache = kept_cache
                if len(kept_ids) > done:  # a negative length drops that many from the end
                    cache.crop(done - len(kept_ids))
            else:
                done = 0
        self._kept = None
        rest = torch.tensor([ids[done:]], device=self.device)  # (1, P - done)
        out = self._forward(rest, cache=cache, keep=len(ids) - first_pos)
        cache = _output_cache(out)
        if self._prefix_cache and hasattr(cache, "crop"):
            self._kept = (list(ids), copy.deepcopy(cache))  # the batch pass expands `cache`
        return torch.log_softmax(out.logits[0].float(), dim=-1), cache

    def _forward(self, ids: torch.Tensor, *, cache: Any, keep: int) -> Any:
        kwargs: dict[str, Any] = {self._cache_kw: cache, "use_cache": True}
        if self._keep_kw is not None:
            kwargs[self._keep_kw] = keep
        out = self.lm(input_ids=ids, **kwargs)
        if self._keep_kw is None:  # older transformers: slice here instead
            out.logits = out.logits[:, -keep:, :]
        return out

    # ---------------------------------------------------------------------------- tokenizing

    def _render(self, messages: list[Message], *, add_generation_prompt: bool) -> str:
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return str(text)

    def _encode(self, text: str) -> list[int]:
        # the chat template already holds the special tokens (BOS and turn markers)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def __repr__(self) -> str:
        adapter = f", adapter={self.adapter!r}" if self.adapter else ""
        return f"LocalBackend(model={self.model!r}{adapter}, device={str(self.device)!r})"


def _output_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    if cache is None:
        raise ConfigError(
            "the model returned no KV cache; it cannot be scored with cache reuse",
            field="model_path",
            value=type(out).__name__,
        )
    return cache


def _expand_cache(cache: Any, n: int) -> Any:
    """Repeat a batch-1 KV cache ``n`` times along the batch axis."""
    if n == 1:
        return cache
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(n)  # in place
        return cache
    # legacy tuple format: ((key, value), ...) per layer, each (1, heads, T, head_dim)
    return tuple(tuple(t.repeat_interleave(n, dim=0) for t in layer) for layer in cache)


def _common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for k in range(n):
        token = first[k]
        if any(s[k] != token for s in seqs):
            return k
    return n


def _check_candidates(candidates: Sequence[str]) -> list[str]:
    cands = list(candidates)
    if not cands:
        raise ConfigError("must not be empty", field="candidates", value=cands)
    for i, c in enumerate(cands):
        if not isinstance(c, str) or not c:
            raise ConfigError("must be a non-empty string", field=f"candidates[{i}]", value=c)
    if len(set(cands)) != len(cands):
        raise ConfigError("must not repeat", field="candidates", value=cands)
    return cands
