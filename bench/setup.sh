#!/usr/bin/env bash
# Installs what `make bench` needs on top of `make setup` and `make build`, project-locally and
# idempotently (a stamp per pinned set; a second run does nothing):
#   .bench-venv/        LiteLLM proxy and Wasmtime, pinned in bench/requirements.txt (~770 MB,
#                       about 1-4 minutes the first time; kept apart from .venv on purpose)
#   bench/node_modules/ Portkey gateway, pinned in bench/package.json and package-lock.json
#   valgrind, iproute2, util-linux (taskset) from Debian when missing
# A peer that cannot be installed is not fatal: bench/run.py prints a note and BENCHMARKS.md
# says the peer was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

note() { echo "bench/setup: $*" >&2; }

apt_install() {
  local sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  note "installing $* with apt-get"
  "${sudo[@]}" apt-get update -qq >&2 && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v ip >/dev/null || missing+=(iproute2)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
  apt_install "${missing[@]}" || note "could not install ${missing[*]}"
fi

requirements=bench/requirements.txt
stamp=.bench-venv/.requirements.sha256
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  note "installing LiteLLM and Wasmtime into .bench-venv (pinned in $requirements)"
  python3 -m venv .bench-venv
  if .bench-venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"; then
    echo "$wanted" > "$stamp"
  else
    note "pip could not install $requirements: LiteLLM and the Wasm micro-benchmarks will be skipped"
  fi
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm || note "no node/npm: Portkey will be skipped"
fi
if command -v npm >/dev/null; then
  lock=bench/package-lock.json
  stamp=bench/node_modules/.lock.sha256
  wanted=$(sha256sum "$lock" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    note "installing the Portkey gateway into bench/node_modules (pinned in $lock)"
    # --ignore-scripts: its only install script is patch-package, with nothing to patch.
    if npm ci --prefix bench --ignore-scripts --no-audit --no-fund --loglevel=error >&2; then
      echo "$wanted" > "$stamp"
    else
      note "npm could not install Portkey: it will be skipped"
    fi
  fi
fi
