#!/usr/bin/env bash
# Installs everything the lab and the test suite need on a fresh Debian 12
# machine (as root): Debian packages, then a virtualenv with this project.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(debootstrap espeak-ng sox redis-server redis-sentinel prometheus docker-compose python3-venv iproute2
              kamailio kamailio-extra-modules sip-tester fail2ban valgrind)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # packages with a daemon (fail2ban, kamailio, redis) are installed for their tools and the
  # lab's own instances: no service is started on this host (the lab and tests start their own)
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -q >/dev/null
  rc=0
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$rc" != 0 ]; then exit "$rc"; fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  echo "bootstrap: installing the project into .venv"
  .venv/bin/pip install -q -e '.[test,bench]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
