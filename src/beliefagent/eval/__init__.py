"""Evaluation: the paper's protocol for the Bayesian teacher and for LLM assistants.

- :mod:`beliefagent.eval.teacher` — the teacher alone (``beliefagent teacher-eval``).
- :func:`run_eval` — several assistants side by side on the same users (``beliefagent eval``);
  :func:`write_report` turns its summary into ``results.json``, ``report.md`` and PNG plots.
"""

from beliefagent.eval.assistants import AssistantSpec, Predictor, parse_assistant
from beliefagent.eval.harness import EvalConfig, EvalRun, load_results, prepare_task, run_eval
from beliefagent.eval.metrics import CI_METHOD, bootstrap_ci, summarize
from beliefagent.eval.report import render_markdown, write_report
from beliefagent.eval.tasks import (
    ChoiceTask,
    QuestionnaireTask,
    UserTrace,
    make_choice_task,
    make_questionnaire_task,
    teacher_traces,
)

__all__ = [
    "CI_METHOD",
    "AssistantSpec",
    "ChoiceTask",
    "EvalConfig",
    "EvalRun",
    "Predictor",
    "QuestionnaireTask",
    "UserTrace",
    "bootstrap_ci",
    "load_results",
    "make_choice_task",
    "make_questionnaire_task",
    "parse_assistant",
    "prepare_task",
    "render_markdown",
    "run_eval",
    "summarize",
    "teacher_traces",
    "write_report",
]
