#!/usr/bin/env bash
# Calico-py: set up a Debian/Ubuntu machine and run the main job or the tests.
#
#   ./bootstrap.sh demo   install what is needed, then run the main job
#   ./bootstrap.sh test   install what is needed, then run the whole test suite
#
# Installing is idempotent: Debian packages through apt-get, Python packages
# into ./.venv. Needs root (network namespaces, nftables, apt).
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$(pwd)

APT_PACKAGES=(
  python3 python3-venv python3-pip python3-dev gcc
  etcd-server etcd-client bird2 gobgpd
  nftables iptables ipset iproute2 iputils-ping conntrack netcat-openbsd procps
  python3-nftables
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_debian_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian's etcd-server starts a system etcd on 2379; the tests start their own.
  if command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
}

# The interpreter .venv is made from: Debian's python3, installed above, unless PYTHON names another.
# (Not whichever python3 comes first on PATH: a self-built one, e.g. pyenv's without PGO/LTO, runs
# Felix's cold start ~8% slower, measured; see docs/benchmarks.md.)
PYTHON=${PYTHON:-/usr/bin/python3}

venv_interpreter() {  # the interpreter .venv was made from, as its pyvenv.cfg records it ("" if none)
  sed -n 's/^executable = //p' .venv/pyvenv.cfg 2>/dev/null || true
}

install_python_packages() {
  local wanted
  wanted=$(readlink -f "$(command -v "$PYTHON" || true)" || true)
  if [ -z "$wanted" ]; then
    echo "bootstrap: no Python interpreter at $PYTHON (set PYTHON to a Python 3.11 or later)" >&2
    exit 1
  fi
  if [ -x .venv/bin/python ] && [ "$(readlink -f "$(venv_interpreter)")" != "$wanted" ]; then
    echo "bootstrap: .venv was made from $(venv_interpreter), not $wanted: making it again"
    rm -rf .venv
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating the virtual environment in .venv ($wanted)"
    "$wanted" -m venv .venv
  fi
  local stamp=.venv/.calico-py-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$ROOT/bootstrap.sh" -nt "$stamp" ]; then
    echo "bootstrap: installing Python packages into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    # compat: the project directory goes on sys.path through a .pth file; the default editable
    # finder hook costs every Python process (each Felix start, each CNI call) ~10 ms at start-up.
    .venv/bin/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat
    touch "$stamp"
  fi
}

cmd=${1:-}
case "$cmd" in
  demo|test) ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

install_debian_packages
install_python_packages
export PATH="$ROOT/.venv/bin:$PATH"

case "$cmd" in
  demo) exec "$ROOT/scripts/demo" ;;
  test) shift; exec "$ROOT/.venv/bin/python" -m pytest tests "$@" ;;
esac
