"""Prompts in the paper's multi-turn format, templated per domain.

A dialogue alternates::

    user:      {intro}\n\n{question}\n\n{option 1}\n{option 2}\n{option 3}
    assistant: The best option is Flight 2.
    user:      Your option Flight 2 is incorrect. I prefer Flight 3.\n\n{question}\n\n{options}
    assistant: ...

The intro and question come from the domain spec; the answer and feedback sentences use the
domain's item word ("Flight", "Hotel").

Two **prompt styles** exist (:data:`PROMPT_STYLES`):

- ``"paper"`` (the default) is the wording above, byte-identical to the paper's release;
- ``"compact"`` writes each option as its feature codes on a 0-10 scale and drops the prose,
  about 2.8x fewer tokens per dialogue for the bundled tokenizer (867 -> 306 for a 5-round
  flight dialogue: cheaper training and scoring)::

    user:      Pick the flight I prefer; my preferences stay the same. Each flight: departure
               time, duration, number of stops, price (0-10).\n1: 3 7 5 10\n2: 0 4 0 9\n3: 10 2 10 1
    assistant: 2
    user:      No, 3.\n1: ...
    assistant: 3

- ``"compact-echo"`` is ``"compact"`` whose feedback restates the chosen option's line
  (``No, 3: 10 2 10 1.``), so the evidence of a round sits next to the next question instead of
  one lookup away (the option that the label names, a turn back).

A model trained on one style must be asked in that style: the style is recorded in a tuned
adapter's metadata (see :mod:`beliefagent.adapters.models`) and picked up from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# the style vocabulary lives with the adapter metadata that records it (imports point down)
from beliefagent.adapters.models import PROMPT_STYLES, check_prompt_style
from beliefagent.domains import ChoiceDomain

__all__ = [
    "PROMPT_STYLES",
    "DialoguePrompts",
    "Message",
    "build_dialogue",
    "check_prompt_style",
]

Message = dict[str, str]


@dataclass(frozen=True)
class DialoguePrompts:
    """The wording of one choice domain's dialogue."""

    item: str
    intro: str
    question: str
    answer: str = "The best option is {item} {label}."
    correct: str = "Your option {item} {label} is correct."
    incorrect: str = "Your option {item} {label} is incorrect. I prefer {item} {choice}."
    answer_prefix: str = "The best option is {item} "
    style: str = "paper"
    echo: bool = False
    """restate the chosen option's line in the feedback (``"compact-echo"``)"""

    @classmethod
    def for_domain(cls, domain: ChoiceDomain, style: str = "paper") -> DialoguePrompts:
        if check_prompt_style(style) != "paper":  # the compact renderings
            word = domain.item.lower()
            labels = ", ".join(f.label for f in domain.features)
            return cls(
                item=domain.item,
                intro=f"Pick the {word} I prefer; my preferences stay the same. "
                f"Each {word}: {labels} (0-10).",
                question="",
                answer="{label}",
                correct="Yes, {label}.",
                incorrect="No, {choice}.",
                answer_prefix="",
                style=style,
                echo=style == "compact-echo",
            )
        return cls(
            item=domain.item, intro=domain.spec.prompts.intro, question=domain.spec.prompts.question
        )

    def render_options(self, domain: ChoiceDomain, option_set: npt.ArrayLike) -> list[str]:
        """The option lines of one round in this style: the domain's own text (``"paper"``), or
        ``"1: 3 7 5 10"``, each feature's [0, 1] code times 10, rounded (``"compact"``)."""
        if self.style == "paper":
            return domain.render_options(option_set)
        codes = np.rint(10 * domain.codes(domain.validate_option_set(option_set)))  # (O, F)
        return [
            f"{domain.label(i)}: " + " ".join(str(int(c)) for c in row)
            for i, row in enumerate(codes)
        ]

    def options_block(self, option_texts: Sequence[str]) -> str:
        if not self.question:
            return "\n".join(option_texts)
        return f"{self.question}\n\n" + "\n".join(option_texts)

    def first_message(self, option_texts: Sequence[str], hint: str | None = None) -> str:
        sep = "\n\n" if self.question else "\n"
        return self._with_hint(f"{self.intro}{sep}{self.options_block(option_texts)}", hint)

    def feedback(
        self, shown: int | None, choice: int, previous: Sequence[str] | None = None
    ) -> str:
        """What the user says after seeing answer ``shown`` (0-based) and choosing ``choice``.
        With no valid answer shown, the user just names their preference. ``previous`` are the
        option lines of that round: an echo style restates the chosen one (``No, 3: 10 2 1.``)."""
        if shown is None:
            if self.style != "paper":
                text = f"I prefer {choice + 1}."
            else:
                text = f"I prefer {self.item} {choice + 1}."
        elif shown == choice:
            text = self.correct.format(item=self.item, label=shown + 1)
        else:
            text = self.incorrect.format(item=self.item, label=shown + 1, choice=choice + 1)
        if self.echo and previous is not None:
            if not 0 <= choice < len(previous):
                raise ValueError(f"choice {choice} is not an option of the previous round")
            text = f"{text[:-1]}: {previous[choice].split(': ', 1)[-1]}."
        return text

    def next_message(
        self,
        shown: int | None,
        choice: int,
        option_texts: Sequence[str],
        hint: str | None = None,
        previous: Sequence[str] | None = None,
    ) -> str:
        """The feedback on the last round then the next question; ``previous`` = the last
        round's option lines (needed by an echo style, ignored by the others)."""
        sep = "\n\n" if self.question else "\n"
        feedback = self.feedback(shown, choice, previous)
        return self._with_hint(f"{feedback}{sep}{self.options_block(option_texts)}", hint)

    def answer_text(self, index: int) -> str:
        return self.answer.format(item=self.item, label=index + 1)

    def prefix(self) -> str:
        """The fixed start of every answer ("The best option is Flight "), for label scoring."""
        return self.answer_prefix.format(item=self.item)

    @staticmethod
    def _with_hint(text: str, hint: str | None) -> str:
        return f"{text}\n\n{hint}" if hint else text


def build_dialogue(
    prompts: DialoguePrompts,
    option_texts: Sequence[Sequence[str]],
    answers: Sequence[int | None],
    choices: Sequence[int],
) -> list[Message]:
    """The full chat of a dialogue: one user turn per option set and the assistant's ``answers``
    (0-based; None for an invalid answer, rendered as an empty reply), with feedback built from
    ``choices``. ``len(option_texts)`` may exceed ``len(answers)`` by one: the chat then ends with
    the user's question for the last set (a prompt awaiting an answer)."""
    n = len(option_texts)
    if len(answers) not in (n, n - 1) or len(choices) < len(answers) or len(choices) > n:
        raise ValueError("option_texts, answers and choices disagree in length")
    messages: list[Message] = []
    for r, texts in enumerate(option_texts):
        if r == 0:
            content = prompts.first_message(texts)
        else:
            content = prompts.next_message(
                answers[r - 1], choices[r - 1], texts, previous=option_texts[r - 1]
            )
        messages.append({"role": "user", "content": content})
        if r < len(answers):
            a = answers[r]
            messages.append(
                {"role": "assistant", "content": prompts.answer_text(a) if a is not None else ""}
            )
    return messages
