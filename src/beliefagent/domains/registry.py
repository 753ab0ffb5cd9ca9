"""Finding and loading domain specs: built-in names (``flight``, ``flight8``, ``flight-K``,
``hotel``, ``bigfive``) or a path to the user's own TOML/JSON spec."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from beliefagent.domains.choice import ChoiceDomain
from beliefagent.domains.questionnaire import QuestionnaireDomain
from beliefagent.domains.spec import ChoiceSpec, load_spec
from beliefagent.errors import SpecError

__all__ = ["Domain", "builtin_domains", "load_domain", "spec_dirs"]

Domain = ChoiceDomain | QuestionnaireDomain

_SWEEP = re.compile(r"^flight-(\d+)$")


def spec_dirs() -> list[Path]:
    """Where built-in specs are looked up: ``$BELIEFAGENT_SPECS``, the copy inside an installed
    wheel (``beliefagent/_specs``), then the repository's ``teachers/`` (editable installs)."""
    dirs = []
    if env := os.environ.get("BELIEFAGENT_SPECS"):
        dirs.append(Path(env))
    here = Path(__file__).resolve()
    dirs.append(here.parent.parent / "_specs")
    dirs.append(here.parents[3] / "teachers")
    return [d for d in dirs if d.is_dir()]


def builtin_domains() -> list[str]:
    names = sorted({p.stem for d in spec_dirs() for p in d.glob("*.toml")})
    return names + [f"flight-{k}" for k in range(2, 9)]


@functools.lru_cache(maxsize=64)
def _load_cached(key: str) -> Domain:
    m = _SWEEP.match(key)
    if m:
        k = int(m.group(1))
        base = _load_cached("flight8")
        assert isinstance(base, ChoiceDomain)
        if not 1 <= k <= base.n_features:
            raise SpecError(f"flight-K needs K in 2..{base.n_features}", field="domain", value=key)
        sweeps = base.spec.sweeps or {}
        if str(k) in sweeps:
            return base.subset(sweeps[str(k)], name=key, keep_order=True)
        order = base.spec.sweep_order or list(base.feature_names)
        return base.subset(order[:k], name=key)
    path = Path(key)
    if not (path.suffix in (".toml", ".json") and path.is_file()):
        for d in spec_dirs():
            if (d / f"{key}.toml").is_file():
                path = d / f"{key}.toml"
                break
        else:
            raise SpecError(
                f"unknown domain (built-in: {', '.join(builtin_domains())}; "
                "or give a path to a .toml/.json spec)",
                field="domain",
                value=key,
            )
    spec = load_spec(path)
    return ChoiceDomain(spec) if isinstance(spec, ChoiceSpec) else QuestionnaireDomain(spec)


def load_domain(name_or_path: str | os.PathLike[str]) -> Domain:
    """Load a built-in domain by name or a spec file by path (cached; domains are immutable)."""
    return _load_cached(str(name_or_path))
