"""Imports point down only (DESIGN.md): a module never imports one above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "beliefagent"
RANK = {
    "errors": 0,
    "adapters": 1,
    "domains": 1,
    "trajectories": 1,
    "belief": 2,
    "prompts": 2,
    "datasets": 2,
    "teachers": 3,
    "middleware": 4,
    "export": 4,
    "server": 5,
    "eval": 5,
    "finetune": 5,
    "demo": 6,
    "compare": 6,
    "cli": 7,
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def test_imports_point_down() -> None:
    bad = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        here = _layer(path)
        assert here in RANK, f"unranked module {here}"
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != "beliefagent" or len(parts) < 2:
                    continue
                there = parts[1]
                if there != here and RANK[there] >= RANK[here]:
                    bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not bad, "\n".join(bad)
