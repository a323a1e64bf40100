#!/usr/bin/env bash
# ---
# name: clear-package-cache
# description: Delete downloaded package files (apt-get clean or dnf/yum clean all) and print the space freed.
# shells: [bash]
# timeout: 2m
# min_role: tier1
# ---
# Only the package manager's download cache goes: installed packages and their configuration
# are untouched, and anything needed again is downloaded on the next install or upgrade.
set -euo pipefail

if [[ "$(id -u)" -ne 0 ]]; then
    echo "clear-package-cache: must run as root (the agent's service does)" >&2
    exit 3
fi

if command -v apt-get >/dev/null 2>&1; then
    manager=apt-get
    cache_dirs=(/var/cache/apt)
    clean=(apt-get clean)
elif command -v dnf >/dev/null 2>&1; then
    manager=dnf
    cache_dirs=(/var/cache/dnf /var/cache/libdnf5)
    clean=(dnf clean all)
elif command -v yum >/dev/null 2>&1; then
    manager=yum
    cache_dirs=(/var/cache/yum)
    clean=(yum clean all)
else
    echo "clear-package-cache: no apt-get, dnf or yum on this host; nothing to clean" >&2
    exit 4
fi

cache_bytes() {
    local total=0 dir size
    for dir in "${cache_dirs[@]}"; do
        if [[ -d "$dir" ]]; then
            size="$(du -sb -- "$dir" 2>/dev/null | cut -f1)"
            total=$((total + ${size:-0}))
        fi
    done
    echo "$total"
}

human() {
    numfmt --to=iec --suffix=B "$1" 2>/dev/null || echo "$1 bytes"
}

before="$(cache_bytes)"
echo "$manager cache: $(human "$before") in ${cache_dirs[*]}"
"${clean[@]}"
after="$(cache_bytes)"
freed=$((before > after ? before - after : 0))
echo "freed $(human "$freed") ($(human "$after") left)"
