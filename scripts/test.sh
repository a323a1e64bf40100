#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: installs what the tests need, then lint, types, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k enroll).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: promtool (package prometheus) checks our /metrics output in the tests;
# chromium (and chromium-driver) runs the dashboard's browser tests (tests/web/test_browser.py),
# driven by Playwright from the dev extra pointed at /usr/bin/chromium.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# Playwright must never fetch a browser of its own: the tests use Debian's.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# PostgreSQL: the storage, migration and e2e tests run on it as well as on SQLite, as user
# postgres with trust auth on 127.0.0.1:5432 (tests/databases.py; RMM_TEST_PG points elsewhere).
pg_answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
pg_psql() { psql -w -q -h 127.0.0.1 -U postgres -d postgres -Atc "$1" 2>/dev/null; }
if [ -z "${RMM_TEST_PG:-}" ]; then
  pg_packages=()
  if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_answers; then
    pg_packages+=(postgresql)
  elif ! command -v psql >/dev/null 2>&1; then
    pg_packages+=(postgresql-client)
  fi
  if [ "${#pg_packages[@]}" -gt 0 ]; then
    echo "== installing Debian packages: ${pg_packages[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      "${pg_packages[@]}" >/dev/null
  fi
  if ! pg_answers || ! pg_psql "SELECT 1" >/dev/null; then
    echo "== starting PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth on loopback)"
    pg_version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    [ -d "/etc/postgresql/$pg_version/main" ] || as_root pg_createcluster "$pg_version" main >/dev/null
    hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
    if ! as_root grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
      # First match wins: trust on loopback goes before the packaged password rules.
      as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    if pg_answers; then
      as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload
    else
      as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
    fi
    for _ in $(seq 60); do pg_psql "SELECT 1" >/dev/null && break; sleep 0.5; done
    pg_psql "SELECT 1" >/dev/null || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
  fi
  [ "$(pg_psql "SELECT 1 FROM pg_database WHERE datname = 'test'")" = 1 ] \
    || pg_psql "CREATE DATABASE test" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
# The distribution was named "rmm" before (on PyPI that name is another project's): a .venv made
# then still lists it, and uninstalling it later would delete the console scripts msp-rmm shares.
if .venv/bin/python -m pip show rmm >/dev/null 2>&1; then
  echo "== removing the distribution's old name (rmm) from .venv"
  .venv/bin/python -m pip uninstall -y -q rmm
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
# Two workers, a test file each at a time: the end-to-end tests mostly wait on real processes,
# so two overlap well on two cores. PYTEST_WORKERS=0 runs everything in this process.
exec .venv/bin/pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
