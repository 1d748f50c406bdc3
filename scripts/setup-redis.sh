#!/usr/bin/env bash
# Installs Redis (Debian's redis-server 7.0) and webdis (Debian's 0.1.9, the HTTP/JSON front the
# filter calls Redis through) for the budgets' shared store: `TOLLGATE_STORE=redis make run` and
# the tests start their own processes of both (never the system services). Does nothing when
# both binaries are already on the PATH.
set -euo pipefail

packages=(redis-server webdis)
if command -v redis-server >/dev/null && command -v webdis >/dev/null; then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "setup-redis: redis-server and webdis are missing; install the Debian packages ${packages[*]}" \
       "as root (apt-get install ${packages[*]}) and run this again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The packages' own services stay stopped where no init system runs (containers, CI); the project
# never uses them either way.
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "installed $(redis-server --version | grep -o 'v=[0-9.]*' | tr -d v=) Redis and webdis $(dpkg-query -W -f '${Version}' webdis)"
