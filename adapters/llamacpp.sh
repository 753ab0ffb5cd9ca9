#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server as the upstream (CPU or GPU, GGUF models).
# llama-server serves one model per process; start it with the LoRA applied (--lora) for a
# tuned model, on another port, and run a second beliefagent serve or compare the two.
set -euo pipefail
mkdir -p runs
MODEL="${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
llama-server -m "$MODEL" --port 8081 --ctx-size 4096 > runs/llama.log 2>&1 &
until curl -sf http://127.0.0.1:8081/health > /dev/null; do sleep 1; done
OPENAI_API_KEY=EMPTY exec beliefagent serve \
  --upstream http://127.0.0.1:8081/v1 --upstream-model "$(basename "$MODEL")" \
  --log runs/serve.jsonl --port 8080
