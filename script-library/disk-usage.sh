#!/usr/bin/env bash
# ---
# name: disk-usage
# description: Show filesystem usage and the ten biggest directories under a path (default /var).
# shells: [bash]
# timeout: 5m
# min_role: tier1
# params:
#   - name: path
#     type: path
#     default: /var
#     # Where data grows; not /root, /etc or other homes of secrets a tier1 need not list.
#     roots: [/var, /home, /tmp, /srv, /opt]
#     description: the directory whose biggest sub-directories to list
# ---
# du stays on the path's own filesystem (-x), so a path does not wander into /proc, network
# shares or other disks; unreadable directories are counted and reported, not fatal.
set -uo pipefail

# The server passes the checked parameter as RMM_PARAM_PATH; $1 when run by hand.
target="${RMM_PARAM_PATH:-${1:-/var}}"
if [[ ! -d "$target" ]]; then
    echo "disk-usage: $target is not a directory; give an existing directory (default /var)" >&2
    exit 2
fi
# The server checked the path's words against the header's roots; a symbolic link inside a root
# (any local user can make /tmp/x -> /root) would still lead out of them, so the directory the
# path really is must be inside a root too. Keep this list the header's `roots`.
roots=(/var /home /tmp /srv /opt)
real="$(realpath -e -- "$target")" || exit 2
inside=false
for root in "${roots[@]}"; do
    real_root="$(realpath -e -- "$root" 2>/dev/null)" || continue
    if [[ "$real" == "$real_root" || "$real" == "$real_root"/* ]]; then
        inside=true
    fi
done
if [[ "$inside" != true ]]; then
    echo "disk-usage: $target is $real, outside ${roots[*]}; refused" >&2
    exit 2
fi
target="$real"

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
