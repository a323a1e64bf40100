#!/usr/bin/env bash
# ---
# name: disk-usage
# description: Show filesystem usage and the ten biggest directories under a path (default /).
# shells: [bash]
# timeout: 5m
# min_role: tier1
# params:
#   - name: path
#     type: path
#     default: /
#     description: the directory whose biggest sub-directories to list
# ---
# du stays on the path's own filesystem (-x), so / does not wander into /proc, network shares
# or other disks; unreadable directories are counted and reported, not fatal.
set -uo pipefail

# The server passes the checked parameter as RMM_PARAM_PATH; $1 when run by hand.
target="${RMM_PARAM_PATH:-${1:-/}}"
if [[ ! -d "$target" ]]; then
    echo "disk-usage: $target is not a directory; give an existing directory (default /)" >&2
    exit 2
fi

echo "== Filesystems =="
# Pseudo filesystems only add noise; fall back to plain df where -x is not understood.
df -hP -x tmpfs -x devtmpfs -x squashfs -x overlay 2>/dev/null || df -hP

echo
echo "== Biggest directories under $target (this filesystem only) =="
errors_file="$(mktemp)"
trap 'rm -f "$errors_file"' EXIT
sizes="$(du -x -k --max-depth=1 -- "$target" 2>"$errors_file")"
# The first line after sorting is the total of $target itself; the next ten are its children.
sort -rn <<<"$sizes" | sed -n '1,11p' | while IFS=$'\t' read -r kib path; do
    printf '%8s  %s\n' "$(numfmt --to=iec --from-unit=1024 "$kib" 2>/dev/null || echo "${kib}K")" "$path"
done
unreadable="$(grep -c . "$errors_file" || true)"
if [[ "$unreadable" -gt 0 ]]; then
    echo "($unreadable entries could not be read and are not counted)"
fi
