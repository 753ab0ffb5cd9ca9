"""Task domains: declarative specs (``teachers/*.toml``), option rendering and parsing, the
hypothesis spaces of choice domains (flight, hotel) and questionnaires (Big Five)."""

from beliefagent.domains.choice import ChoiceDomain
from beliefagent.domains.questionnaire import QuestionnaireDomain
from beliefagent.domains.registry import Domain, builtin_domains, load_domain
from beliefagent.domains.spec import ChoiceSpec, QuestionnaireSpec, load_spec, parse_spec

__all__ = [
    "ChoiceDomain",
    "ChoiceSpec",
    "Domain",
    "QuestionnaireDomain",
    "QuestionnaireSpec",
    "builtin_domains",
    "load_domain",
    "load_spec",
    "parse_spec",
]
