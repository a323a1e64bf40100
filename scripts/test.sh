#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: installs what the tests need, then lint, types, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k enroll).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: promtool (package prometheus) checks our /metrics output in the tests.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "== installing the project with its dev extra"
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' \
    >.venv/pip-install.log 2>&1; then
  cat .venv/pip-install.log
  echo "pip install failed (log above)" >&2
  exit 1
fi

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/pytest "$@"
