"""Export a teaching set from production-style logs: real people's flight choices.

The official release's ``interaction_flight_human.jsonl`` (Qiu et al. 2026; 500 dialogues, 10
people on each of 50 fixed 5-round option sequences) is treated as if it were the trajectory log
of a deployed assistant: each line becomes a SessionStart, one Turn per round (the options' text
and features, the user's choice; no model answers, as in production logs that kept little), and a
SessionEnd. The log goes to ``--out`` (a temporary directory by default), then
``export_teaching_set`` re-runs a noise-aware Bayesian teacher over it and writes
``train.jsonl``, ``eval.jsonl`` and ``manifest.json``.

The official file is read from ``$BELIEFAGENT_DATA`` or ``../shared/data/qiu2026`` and never
copied into the repository.

    python examples/export_from_logs.py [--likelihood epsilon:0.1] [--target bayes] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from beliefagent.datasets import find_data_file
from beliefagent.domains import ChoiceDomain, load_domain
from beliefagent.export import export_teaching_set
from beliefagent.trajectories import (
    OptionRecord,
    SessionEnd,
    SessionStart,
    TrajectoryWriter,
    Turn,
)


def write_log(source: Path, log_path: Path, domain: ChoiceDomain) -> int:
    """Convert each line of the human interactions file into trajectory records; returns the
    number of sessions written."""
    n = 0
    with TrajectoryWriter(log_path, fsync=False) as log:
        for line_no, line in enumerate(source.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            rec = json.loads(line)
            session_id = f"human-{line_no:04d}"
            user_id = str(rec["reward_fn"])  # the person's stated reward function
            log.write(
                SessionStart(
                    session_id=session_id,
                    user_id=user_id,
                    domain=domain.name,
                    policy="none",
                    meta={"source": source.name, "line": line_no, "idx": rec.get("idx")},
                )
            )
            for r, rnd in enumerate(rec["rounds"]):
                options = []
                for text in rnd["options"]:
                    levels = domain.parse_option(text)
                    options.append(
                        OptionRecord(text=text, features=dict(domain.feature_values(levels)))
                    )
                log.write(
                    Turn(
                        session_id=session_id,
                        user_id=user_id,
                        domain=domain.name,
                        round=r,
                        options=options,
                        user_choice=int(rnd["user_idx"]),
                    )
                )
            log.write(SessionEnd(session_id=session_id, rounds=len(rec["rounds"])))
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="interaction_flight_human.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument(
        "--likelihood", default="epsilon:0.1", help="noise-free | epsilon:E | softmax:T"
    )
    parser.add_argument("--target", default="bayes", choices=["bayes", "bayes-soft", "oracle"])
    parser.add_argument("--format", default="chat", choices=["chat", "openai"])
    parser.add_argument("--eval-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    domain = load_domain("flight")
    assert isinstance(domain, ChoiceDomain)
    source = find_data_file(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out if args.out is not None else Path(tmp)
        log_path = root / "logs" / "flight_human.jsonl"
        if log_path.exists():
            log_path.unlink()
        n = write_log(source, log_path, domain)
        print(f"wrote {n} sessions from {source} to {log_path}")
        manifest = export_teaching_set(
            log_path,
            root / "teaching",
            args.target,
            args.format,
            args.eval_fraction,
            args.seed,
            likelihood=args.likelihood,
            overwrite=True,
        )
        counts = manifest["counts"]
        print(f"teacher: {manifest['teacher']['likelihood']}, target: {manifest['target']}")
        print(f"sessions read: {counts['sessions_read']}")
        print(
            f"examples: train {counts['examples']['train']}, eval {counts['examples']['eval']} "
            f"(users: train {counts['users']['train']}, eval {counts['users']['eval']})"
        )
        print(f"duplicates dropped: {counts['duplicates_dropped']}")
        print(f"skipped: {counts['skipped'] or 'none'}")
        for name, info in manifest["files"].items():
            print(f"{name}: {info['examples']} lines, sha256 {info['sha256'][:16]}...")
        print(f"manifest: {root / 'teaching' / 'manifest.json'}")
        if args.out is None:
            print("(temporary directory; pass --out DIR to keep the files)")


if __name__ == "__main__":
    main()
