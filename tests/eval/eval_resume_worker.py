"""Child process for the resume test: runs an evaluation into ``out`` and writes its summary.

python eval_resume_worker.py OUT STUB_URL
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from beliefagent.eval.harness import EvalConfig, run_eval

out, url = Path(sys.argv[1]), sys.argv[2]
config = EvalConfig(users=4, heldout_sets=3, seed=5, concurrency=2)
run = run_eval(config, ["bayes", "random", f"openai:stub@{url}"], out)
(out / "summary.json").write_text(json.dumps(run.summary))
