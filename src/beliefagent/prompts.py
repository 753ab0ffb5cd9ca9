"""Prompts in the paper's multi-turn format, templated per domain.

A dialogue alternates::

    user:      {intro}\n\n{question}\n\n{option 1}\n{option 2}\n{option 3}
    assistant: The best option is Flight 2.
    user:      Your option Flight 2 is incorrect. I prefer Flight 3.\n\n{question}\n\n{options}
    assistant: ...

The intro and question come from the domain spec; the answer and feedback sentences use the
domain's item word ("Flight", "Hotel").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from beliefagent.domains import ChoiceDomain

__all__ = [
    "DialoguePrompts",
    "Message",
    "build_dialogue",
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

    @classmethod
    def for_domain(cls, domain: ChoiceDomain) -> DialoguePrompts:
        return cls(
            item=domain.item, intro=domain.spec.prompts.intro, question=domain.spec.prompts.question
        )

    def options_block(self, option_texts: Sequence[str]) -> str:
        return f"{self.question}\n\n" + "\n".join(option_texts)

    def first_message(self, option_texts: Sequence[str], hint: str | None = None) -> str:
        return self._with_hint(f"{self.intro}\n\n{self.options_block(option_texts)}", hint)

    def feedback(self, shown: int | None, choice: int) -> str:
        """What the user says after seeing answer ``shown`` (0-based) and choosing ``choice``.
        With no valid answer shown, the user just names their preference."""
        if shown is None:
            return f"I prefer {self.item} {choice + 1}."
        if shown == choice:
            return self.correct.format(item=self.item, label=shown + 1)
        return self.incorrect.format(item=self.item, label=shown + 1, choice=choice + 1)

    def next_message(
        self, shown: int | None, choice: int, option_texts: Sequence[str], hint: str | None = None
    ) -> str:
        return self._with_hint(
            f"{self.feedback(shown, choice)}\n\n{self.options_block(option_texts)}", hint
        )

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
            content = prompts.next_message(answers[r - 1], choices[r - 1], texts)
        messages.append({"role": "user", "content": content})
        if r < len(answers):
            a = answers[r]
            messages.append(
                {"role": "assistant", "content": prompts.answer_text(a) if a is not None else ""}
            )
    return messages
