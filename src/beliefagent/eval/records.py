"""Records of evaluation dialogues: each played round as a trajectory :class:`Turn`, and the
answer parser of the belief probe."""

from __future__ import annotations

from beliefagent.adapters.base import Message
from beliefagent.eval.assistants import Answer, AssistantSpec
from beliefagent.eval.tasks import ChoiceFormat, ChoiceTask, QuestionnaireFormat, Task, UserTrace
from beliefagent.trajectories import Decision, DecisionSource, OptionRecord, Turn
from beliefagent.trajectories import Message as MessageRecord

__all__ = ["parse_scale", "turn_record"]


def parse_scale(text: str) -> int | None:
    """A 1..5 scale answer (0-based), or None unless exactly one such digit appears."""
    digits = {int(ch) for ch in text if ch in "12345"}
    return digits.pop() - 1 if len(digits) == 1 else None


def turn_record(
    spec: AssistantSpec,
    task: Task,
    u: int,
    r: int,
    session_id: str,
    prompt: list[Message],
    answer: Answer,
    shown: int | None,
    choice: int,
    trace: UserTrace,
    fmt: ChoiceFormat | QuestionnaireFormat,
) -> Turn:
    """The trajectory record of round ``r`` of user ``u``'s evaluation dialogue."""
    if isinstance(task, ChoiceTask):
        levels = task.rounds[u, r]
        options = [
            OptionRecord(text=t, features=dict(task.domain.feature_values(levels[i])))
            for i, t in enumerate(task.domain.render_options(levels))
        ]
    else:
        options = [OptionRecord(text=lb) for lb in fmt.labels]
    source: DecisionSource = (
        "none" if shown is None else ("llm" if shown == answer.choice else "bayes")
    )
    return Turn(
        session_id=session_id,
        user_id=task.user_ids[u],
        domain=task.domain.name,
        round=r,
        options=options,
        prompt=[MessageRecord(role=m["role"], content=m["content"]) for m in prompt],
        raw_replies=[answer.text] if answer.text is not None else [],
        llm_choice=answer.choice,
        llm_distribution=answer.distribution,
        bayes_choice=int(trace.dialogue_pred[r]),
        bayes_distribution=[float(p) for p in trace.dialogue_dist[r]],
        shown_choice=shown,
        decision=Decision(policy=spec.policy, source=source),
        user_choice=choice,
        errors=[answer.error] if answer.error else [],
        invalid=answer.choice is None and spec.asks_llm,
    )
