#!/usr/bin/env bash
# Build the agent as one file that the host's Python runs: dist/rmm-agent-<version>.pyz.
#   scripts/build_agent_archive.sh [OUTPUT]
# The archive is made with shiv: psutil and grpcio are compiled extensions, which Python cannot
# import from inside a zip, and shiv unpacks the archive's libraries once into $SHIV_ROOT
# (default ~/.shiv; the service units set /var/cache/rmm-agent) and runs from there.
# It holds the `agent` extra only (no server dependencies) and is built for the Python minor
# version and platform of $PYTHON: build one per target (cp311 x86_64, cp312 aarch64...).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
SHIV="${SHIV:-.venv/bin/shiv}"
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' rmm_common/__init__.py)
OUTPUT="${1:-dist/rmm-agent-$version.pyz}"

if ! "$SHIV" --version >/dev/null 2>&1; then
  echo "build_agent_archive: shiv not found at $SHIV: pip install -e '.[dev]' (or set SHIV=)" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
site="$work/site-packages"

# pip builds a source tree in place (build/, msp_rmm.egg-info/): two builds of one checkout at once
# would trip over each other, so build from a copy of just what the wheel is made of.
src="$work/src"
mkdir -p "$src"
# Not setup.py: it adds the server's policies and scripts to the wheel, which the archive drops.
cp -R pyproject.toml README.md rmm_agent rmm_server rmm_cli rmm_common rmm_proto "$src"/
find "$src" -name __pycache__ -type d -prune -exec rm -rf {} +

echo "== installing msp-rmm[agent] $version for $("$PYTHON" -c 'import sys; print(sys.implementation.cache_tag)') into a staging dir"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile \
  --target "$site" "$src[agent]"
# The wheel carries every package of the project; the agent needs none of these.
rm -rf "$site"/rmm_server "$site"/rmm_cli "$site"/bin

mkdir -p "$(dirname "$OUTPUT")"
"$SHIV" --site-packages "$site" --entry-point rmm_agent.cli:main \
  --python '/usr/bin/env python3' --compressed --reproducible --output-file "$OUTPUT"
echo "== built $OUTPUT ($(du -h "$OUTPUT" | cut -f1))"
