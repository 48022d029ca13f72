#!/usr/bin/env bash
# Installs everything the project needs on a Debian machine: the real servers the tests
# and the sandbox run (apt) and the Python packages (a venv in .venv). Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(docker-registry redis-server haproxy prometheus skopeo git openssl curl ca-certificates python3-venv busybox iproute2)
# containerd (and ctr) for the node tests, which start their own daemon as root. A machine that
# already has one (Docker's containerd.io conflicts with Debian's package) keeps it.
command -v containerd >/dev/null 2>&1 || APT_PACKAGES+=(containerd)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The sandbox and the tests start their own servers; the packages' services would hold
  # 6379 (redis), 5000 (docker-registry, the sandbox's LB port) and 9090 (prometheus).
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now redis-server docker-registry haproxy prometheus >/dev/null 2>&1 || true
    # the tests run their own containerd; a system one that this script just installed is not wanted
    case " ${missing[*]} " in *" containerd "*) systemctl disable --now containerd >/dev/null 2>&1 || true ;; esac
  fi
  # Without systemd the package's init script starts prometheus on :9090 of every interface.
  if [ -x /etc/init.d/prometheus ] && [ ! -d /run/systemd/system ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
fi

PY="${BOOTSTRAP_PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# checkov (the tests run it on the rendered manifests) pins dependencies (boto3, packaging, ...) that clash
# with the project's: it gets a virtualenv of its own under .tools/.
checkov_stamp=.tools/checkov/.requirements.sha256
checkov_want="$(sha256sum requirements-checkov.txt | cut -d' ' -f1)"
# A venv records its absolute path in its scripts: one made at another path (a moved clone) cannot run.
if ! .tools/checkov/venv/bin/checkov --version >/dev/null 2>&1 || [ "$(cat "$checkov_stamp" 2>/dev/null)" != "$checkov_want" ]; then
  rm -rf .tools/checkov/venv
  mkdir -p .tools/checkov
  "$PY" -m venv .tools/checkov/venv
  .tools/checkov/venv/bin/pip install -q --disable-pip-version-check -r requirements-checkov.txt
  echo "$checkov_want" > "$checkov_stamp"
fi

# The registry binary at the version of the program's default image (Distribution 3.x is not in
# Debian) and the token server (docker_auth), built with Go into .tools/ (cached: a second run does nothing).
.venv/bin/python -m registry_ha.toolchain install
