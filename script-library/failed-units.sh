#!/usr/bin/env bash
# ---
# name: failed-units
# description: List failed systemd units with the last journal lines of each; exits 1 if any failed.
# shells: [bash]
# timeout: 1m
# min_role: tier1
# params:
#   - name: lines
#     type: int
#     min: 1
#     max: 1000
#     default: 20
#     description: journal lines to show for each failed unit
# ---
# Exit codes: 0 nothing failed, 1 some unit failed, 2 bad argument, 3 no systemd on this host.
set -uo pipefail

# The server passes the checked parameter as RMM_PARAM_LINES; $1 when run by hand.
lines="${RMM_PARAM_LINES:-${1:-20}}"
if ! [[ "$lines" =~ ^[0-9]+$ ]] || [[ "$lines" -lt 1 ]]; then
    echo "failed-units: LINES must be a whole number of journal lines, e.g. 20 (got '$lines')" >&2
    exit 2
fi
# The test sd_booted() uses: systemctl alone may exist in containers without systemd running.
if ! command -v systemctl >/dev/null 2>&1 || [[ ! -d /run/systemd/system ]]; then
    echo "failed-units: this host does not run systemd; nothing to check" >&2
    exit 3
fi

mapfile -t units < <(systemctl list-units --failed --no-legend --plain --no-pager | awk '{print $1}')
if [[ "${#units[@]}" -eq 0 ]]; then
    echo "no failed units"
    exit 0
fi

systemctl list-units --failed --no-pager
for unit in "${units[@]}"; do
    echo
    echo "== $unit: last $lines journal lines =="
    journalctl --unit="$unit" --lines="$lines" --no-pager --output=short-iso 2>&1 \
        || echo "(journal not readable for $unit)"
done
exit 1
