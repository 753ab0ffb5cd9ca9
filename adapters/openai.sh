#!/usr/bin/env bash
# OpenAI (or any hosted OpenAI-compatible API) as the upstream. The upstream key is read from
# $OPENAI_API_KEY (--upstream-key-env to change); clients of beliefagent serve use their own
# keys, listed comma-separated in $BELIEFAGENT_KEYS.
set -euo pipefail
mkdir -p runs
: "${OPENAI_API_KEY:?set OPENAI_API_KEY}"
: "${BELIEFAGENT_KEYS:?set BELIEFAGENT_KEYS, e.g. sk-team-a,sk-team-b}"
exec beliefagent serve \
  --upstream https://api.openai.com/v1 --upstream-model gpt-4o-mini \
  --tuned "${TUNED_MODEL:-ft:gpt-4o-mini:org::abc123}" --canary "${TUNED_MODEL:-ft:gpt-4o-mini:org::abc123}:0.05" \
  --api-key-env BELIEFAGENT_KEYS --rate-limit 5 --burst 20 \
  --log runs/serve.jsonl --host 0.0.0.0 --port 8080
