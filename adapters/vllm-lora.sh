#!/usr/bin/env bash
# vLLM (GPU) with a LoRA adapter, and beliefagent serve in front of it.
# Needs: pip install 'beliefagent[vllm,server,openai]' on the GPU host.
set -euo pipefail
CONFIG="${1:-adapters/vllm-lora.toml}"
mkdir -p runs

# 1. The vllm serve command, checked (files, base model, rank) and generated from the TOML.
CMD=$(python - "$CONFIG" <<'PY'
import sys, tomllib
from beliefagent.adapters.vllm import build_serve_command, shell_command
cfg = tomllib.load(open(sys.argv[1], "rb"))["vllm"]
argv = build_serve_command(cfg["base_model"], cfg["adapters"], port=cfg["port"],
                           api_key_env=cfg.get("api_key_env"), extra_args=cfg.get("extra_args", []))
print(shell_command(argv))   # starts with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
PY
)
echo "+ $CMD"
eval "$CMD" > runs/vllm.log 2>&1 &
until curl -sf http://127.0.0.1:8000/health > /dev/null; do sleep 5; done

# 2. The belief middleware in front; the tuned adapter is a second model name.
OPENAI_API_KEY="${VLLM_API_KEY:-EMPTY}" exec beliefagent serve \
  --upstream http://127.0.0.1:8000/v1 --upstream-model Qwen/Qwen2.5-7B-Instruct \
  --tuned tuned --canary tuned:0.1 --log runs/serve.jsonl --port 8080
