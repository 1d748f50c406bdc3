#!/usr/bin/env bash
# Installs LiteLLM, pinned, into ./.pricing-venv (never .venv, never system-wide): the independent
# oracle scripts/litellm-oracle.py prices the test cases with. Not needed to build or test Tollgate:
# its output is committed (tests/fixtures/pricing/litellm_costs.json).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^PINNED = "\(.*\)"$/\1/p' scripts/litellm-oracle.py)
if [ -x .pricing-venv/bin/python ] && \
   [ "$(.pricing-venv/bin/python -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null)" = "$version" ]; then
  exit 0
fi
python3 -m venv .pricing-venv
.pricing-venv/bin/pip install --quiet --disable-pip-version-check "litellm==$version"
echo "installed litellm $version into .pricing-venv"
