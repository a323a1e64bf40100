#!/usr/bin/env bash
# ---
# name: restart-service
# description: Restart a systemd service and show its status; exits non-zero unless it is active afterwards.
# shells: [bash]
# timeout: 3m
# min_role: tier2
# params:
#   - name: name
#     type: string
#     required: true
#     pattern: "[A-Za-z0-9][A-Za-z0-9@._:-]*"
#     description: the systemd unit, e.g. nginx or nginx.service
# ---
# Exit codes: 0 active after the restart, 1 restart failed or not active, 2 bad argument,
# 3 no systemd on this host.
set -uo pipefail

# The server passes the checked parameter as RMM_PARAM_NAME; $1 when run by hand.
if [[ -n "${RMM_PARAM_NAME:-}" ]]; then
    set -- "$RMM_PARAM_NAME"
fi
if [[ $# -ne 1 || -z "$1" ]]; then
    echo "restart-service: give exactly one service name, e.g. nginx or nginx.service" >&2
    exit 2
fi
unit="$1"
# One unit name only: no options, no globs (systemctl would restart every match).
if ! [[ "$unit" =~ ^[A-Za-z0-9][A-Za-z0-9@._:-]*$ ]]; then
    echo "restart-service: '$unit' is not a unit name (letters, digits, @ . _ : - only)" >&2
    exit 2
fi
if ! command -v systemctl >/dev/null 2>&1 || [[ ! -d /run/systemd/system ]]; then
    echo "restart-service: this host does not run systemd; cannot restart $unit" >&2
    exit 3
fi

echo "restarting $unit"
if ! systemctl --no-ask-password restart -- "$unit"; then
    echo "restart-service: systemctl restart $unit failed" >&2
    systemctl --no-pager --lines=20 status -- "$unit"
    exit 1
fi
# A service that dies right after starting still reports active at first: look again shortly.
sleep 3
systemctl --no-pager --lines=20 status -- "$unit"
state="$(systemctl is-active -- "$unit")"
if [[ "$state" != "active" ]]; then
    echo "restart-service: $unit is $state after the restart" >&2
    exit 1
fi
echo "$unit is active"
