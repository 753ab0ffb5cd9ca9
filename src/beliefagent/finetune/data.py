"""Teaching sets: reading the JSONL, tokenizing whole dialogues, and batching them.

One line of a teaching set (as written by ``beliefagent export --format chat``)::

    {"id": "u17-0", "user_id": 17, "domain": "flight", "target": "bayes-soft",
     "messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": "The best option is Flight 2."}, ...],
     "targets": [1, 0, ...],                      # 0-based option per assistant turn
     "soft_targets": [[0.33, 0.33, 0.34], ...],  # teacher's predictive per turn, or null
     "labels": ["1", "2", "3"], "user_choices": [2, 0, ...]}

A dialogue becomes ONE token sequence (the model's chat template, rendered turn by turn), so a
5-round dialogue trains its 5 answers in one forward pass. For every assistant turn we keep
the position whose next-token distribution chooses the option label (the token after
``"The best option is Flight "``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beliefagent.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "IGNORE_INDEX",
    "ChatExample",
    "EncodedExample",
    "collate",
    "encode_example",
    "encode_examples",
    "file_sha256",
    "load_examples",
    "prompt_style_of",
]

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label value that cross-entropy skips (every token that is not part of an answer)."""

DEFAULT_ANSWER_PREFIX = "The best option is "
"""Where the option label starts in a choice domain's answer; a row's ``answer_prefix`` field
overrides it (a questionnaire answers "My prediction: 3.")."""


@dataclass(frozen=True)
class ChatExample:
    """One teaching dialogue, as read from the JSONL."""

    id: str
    messages: list[dict[str, str]]
    targets: list[int]
    labels: list[str]
    soft_targets: list[list[float]] | None = None
    user_choices: list[int] | None = None
    user_id: Any = None
    domain: str = ""
    target: str = ""
    answer_prefix: str = DEFAULT_ANSWER_PREFIX
    prompt_style: str = "paper"

    @classmethod
    def from_dict(cls, row: dict[str, Any], *, path: str = "", line: int = 0) -> ChatExample:
        """Validate one JSON object; problems raise :class:`DataError` naming path and line."""

        def bad(msg: str) -> DataError:
            return DataError(msg, path=path or None, line=line or None)

        for key in ("messages", "targets", "labels"):
            if key not in row:
                raise bad(f"missing field {key!r}")
        msgs = row["messages"]
        if not isinstance(msgs, list) or not all(
            isinstance(m, dict)
            and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str)
            for m in msgs
        ):
            raise bad("'messages' must be a list of {role, content} objects")
        labels = [str(x) for x in row["labels"]]
        n_answers = sum(m["role"] == "assistant" for m in msgs)
        targets = row["targets"]
        if not isinstance(targets, list) or len(targets) != n_answers:
            raise bad(f"'targets' needs one index per assistant turn ({n_answers})")
        if not all(isinstance(t, int) and 0 <= t < len(labels) for t in targets):
            raise bad(f"'targets' must be 0-based indices below {len(labels)}")
        soft = row.get("soft_targets")
        if soft is not None and (
            len(soft) != n_answers
            or any(len(p) != len(labels) or abs(sum(p) - 1.0) > 1e-3 for p in soft)
        ):
            raise bad("'soft_targets' needs one distribution over the labels per assistant turn")
        choices = row.get("user_choices")
        return cls(
            id=str(row.get("id", line)),
            messages=[{"role": m["role"], "content": m["content"]} for m in msgs],
            targets=[int(t) for t in targets],
            labels=labels,
            soft_targets=None if soft is None else [[float(x) for x in p] for p in soft],
            user_choices=None if choices is None else [int(c) for c in choices],
            user_id=row.get("user_id"),
            domain=str(row.get("domain", "")),
            target=str(row.get("target", "")),
            answer_prefix=str(row.get("answer_prefix", DEFAULT_ANSWER_PREFIX)),
            prompt_style=str(row.get("prompt_style", "paper")),
        )


def load_examples(path: str | Path) -> list[ChatExample]:
    """Read a teaching-set JSONL file (blank lines skipped)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("no such teaching-set file", path=str(path))
    out: list[ChatExample] = []
    with p.open(encoding="utf-8") as f:
        for i, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"not JSON: {exc.msg}", path=str(path), line=i) from exc
            out.append(ChatExample.from_dict(row, path=str(path), line=i))
    if not out:
        raise DataError("the teaching set is empty", path=str(path))
    return out


def prompt_style_of(examples: Sequence[ChatExample]) -> str:
    """The one prompt style a teaching set is written in (a model is asked in the style it was
    trained on, so a set that mixes styles is refused)."""
    styles = sorted({e.prompt_style for e in examples})
    if len(styles) > 1:
        raise DataError(f"the teaching set mixes prompt styles {styles}; export one style")
    return styles[0] if styles else "paper"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (recorded in ``training_meta.json``)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class EncodedExample:
    """A tokenized dialogue. ``labels`` is ``input_ids`` with every non-answer token set to
    ``IGNORE_INDEX``; ``label_positions[a]`` is the index whose next-token distribution picks
    answer ``a``'s option label (so ``input_ids[label_positions[a] + 1]`` is that label)."""

    id: str
    input_ids: list[int]
    labels: list[int]
    label_positions: list[int]
    hard_targets: list[int]
    soft_targets: list[list[float]] | None
    user_choices: list[int] | None
    label_token_ids: tuple[int, ...]


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], gen: bool) -> str:
    """The chat template as text; a plain ``User:``/``Assistant:`` format without one."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        return str(text)
    out = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return out + ("Assistant: " if gen else "")


def _tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _label_token(
    tokenizer: PreTrainedTokenizerBase, answer: str, char: int, label: str
) -> tuple[list[int], int, int]:
    """Tokenize ``answer`` and find the single token that spells the label starting at
    character ``char``. Returns ``(ids, token_index, token_id)``."""
    enc = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    for k, (start, end) in enumerate(enc["offset_mapping"]):
        if start <= char < end:
            if answer[start:end].strip() != label:
                raise ConfigError(
                    f"the tokenizer merges the option label into {answer[start:end]!r}; label "
                    "scoring needs the label as a token of its own",
                    field="tokenizer",
                    value=answer,
                )
            return ids, k, ids[k]
    raise ConfigError("cannot locate the label token", field="tokenizer", value=answer)


def encode_example(
    example: ChatExample,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int = 2048,
    answer_prefix: str | None = None,
) -> EncodedExample | None:
    """Tokenize a whole dialogue with the tokenizer's chat template, segment by segment.

    The answer tokens (the assistant's reply and the template's end-of-turn marker) are the only
    ones with labels. The option label is found as the first text after the last occurrence of
    ``answer_prefix`` (default: the example's own) in the reply ("The best option is Flight 2."
    -> "2" is located from its surrounding item word: the token right after ``"... Flight "``).
    Turns that do not fit in ``max_length`` are dropped from the end; returns None when not even
    the first answer fits.
    """
    if not tokenizer.is_fast:
        raise ConfigError("label scoring needs a fast tokenizer", field="tokenizer", value=None)
    if answer_prefix is None:
        answer_prefix = example.answer_prefix
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    label_ids: list[int] = []
    prev = ""
    answer_no = 0
    msgs = example.messages
    for j, msg in enumerate(msgs):
        if msg["role"] != "assistant":
            continue
        ctx = _render(tokenizer, msgs[:j], gen=True)
        full = _render(tokenizer, msgs[: j + 1], gen=False)
        if not ctx.startswith(prev) or not full.startswith(ctx):
            raise ConfigError(
                "the chat template renders earlier turns differently once more follow",
                field="tokenizer.chat_template",
                value=example.id,
            )
        ctx_ids = _tokens(tokenizer, ctx[len(prev) :])
        answer = full[len(ctx) :]
        content = msg["content"]
        target = example.targets[answer_no]
        # an empty prefix (the compact prompt style answers just "2") starts at the reply
        cut = content.rfind(answer_prefix) if answer_prefix else 0
        if cut < 0:
            raise DataError(f"assistant turn {answer_no} lacks {answer_prefix!r}", path=example.id)
        label_text = example.labels[target]
        # the label follows the item word: "The best option is Flight 2." -> index of "2"
        label_char = content.find(label_text, cut + len(answer_prefix))
        if label_char < 0:
            raise DataError(
                f"assistant turn {answer_no} does not name label {label_text!r}", path=example.id
            )
        offset = answer.find(content)
        ans_ids, k, _ = _label_token(tokenizer, answer, offset + label_char, label_text)
        if len(ids) + len(ctx_ids) + len(ans_ids) > max_length:
            break
        # the same slot spelled with each label gives the label token ids
        turn_label_ids = []
        for lab in example.labels:
            swapped = (
                answer[: offset + label_char]
                + lab
                + answer[offset + label_char + len(label_text) :]
            )
            _, k2, tok2 = _label_token(tokenizer, swapped, offset + label_char, lab)
            if k2 != k:
                raise ConfigError(
                    "option labels tokenize to different lengths",
                    field="labels",
                    value=example.labels,
                )
            turn_label_ids.append(tok2)
        if label_ids and turn_label_ids != label_ids:
            raise ConfigError(
                "label tokens differ between turns", field="labels", value=example.labels
            )
        label_ids = turn_label_ids
        start = len(ids) + len(ctx_ids)
        ids += ctx_ids + ans_ids
        labels += [IGNORE_INDEX] * len(ctx_ids) + ans_ids
        positions.append(start + k - 1)
        prev = full
        answer_no += 1
    if not positions:
        return None
    n = len(positions)
    return EncodedExample(
        id=example.id,
        input_ids=ids,
        labels=labels,
        label_positions=positions,
        hard_targets=example.targets[:n],
        soft_targets=None if example.soft_targets is None else example.soft_targets[:n],
        user_choices=None if example.user_choices is None else example.user_choices[:n],
        label_token_ids=tuple(label_ids),
    )


def encode_examples(
    examples: Sequence[ChatExample],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int = 2048,
) -> tuple[list[EncodedExample], int]:
    """Encode many dialogues; returns ``(encoded, n_skipped)``. Every example must share the
    same option labels (one label-token set per teaching set)."""
    out: list[EncodedExample] = []
    skipped = 0
    for ex in examples:
        enc = encode_example(ex, tokenizer, max_length=max_length)
        if enc is None:
            skipped += 1
            continue
        if out and enc.label_token_ids != out[0].label_token_ids:
            raise DataError("examples use different option labels", path=ex.id)
        out.append(enc)
    if skipped:
        logger.warning("%d dialogues do not fit in max_length=%d; skipped", skipped, max_length)
    return out, skipped


def collate(batch: Sequence[EncodedExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch of encoded dialogues into tensors (right padding).

    Two dialogues (``pad_token_id = 0``, label tokens "1" "2" "3" = 33 34 35): ``a`` of 6 tokens
    with one answer ``31 34 2`` ("Flight", "2", end-of-turn), ``b`` of 4 tokens with two answers
    ``33 2`` and ``35``::

        input_ids       (B, T)    [[5, 6, 7, 31, 34, 2], [5, 33, 2, 35, 0, 0]]
        attention_mask  (B, T)    [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
        labels          (B, T)    [[-100, -100, -100, 31, 34, 2], [-100, 33, 2, 35, -100, -100]]
        label_positions (B, A)    [[3, 0], [0, 2]]   # logits[b, pos] predict the option label
        label_mask      (B, A)    [[True, False], [True, True]]
        hard_targets    (B, A)    [[1, 0], [0, 2]]   # 0-based option (0 where masked)
        soft_targets    (B, A, K) [[[0, 1, 0], [0, 0, 0]], [[.5, .5, 0], [0, 0, 1]]]
                                  # the teacher's distributions; one-hot of hard_targets when absent
        label_token_ids (K,)      [33, 34, 35]

    Only the answer tokens carry labels; everything else (system prompt, user turns, template
    markers, padding) is ``-100``.
    """
    import torch

    if not batch:
        raise ValueError("empty batch")
    k = len(batch[0].label_token_ids)
    t = max(len(e.input_ids) for e in batch)
    a = max(len(e.label_positions) for e in batch)
    b = len(batch)
    input_ids = torch.full((b, t), pad_token_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros((b, t), dtype=torch.long)  # (B, T)
    labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    positions = torch.zeros((b, a), dtype=torch.long)  # (B, A)
    mask = torch.zeros((b, a), dtype=torch.bool)  # (B, A)
    hard = torch.zeros((b, a), dtype=torch.long)  # (B, A)
    soft = torch.zeros((b, a, k), dtype=torch.float32)  # (B, A, K)
    for i, e in enumerate(batch):
        n, m = len(e.input_ids), len(e.label_positions)
        input_ids[i, :n] = torch.tensor(e.input_ids)
        attention[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
        positions[i, :m] = torch.tensor(e.label_positions)
        mask[i, :m] = True
        hard[i, :m] = torch.tensor(e.hard_targets)
        if e.soft_targets is not None:
            soft[i, :m] = torch.tensor(e.soft_targets, dtype=torch.float32)
        else:
            soft[i, :m] = torch.nn.functional.one_hot(hard[i, :m], k).float()
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "label_positions": positions,
        "label_mask": mask,
        "hard_targets": hard,
        "soft_targets": soft,
        "label_token_ids": torch.tensor(batch[0].label_token_ids, dtype=torch.long),
    }
