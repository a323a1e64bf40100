"""systemd's readiness and watchdog protocol (sd_notify), in the few lines it takes.

The protocol is one datagram of `KEY=VALUE` lines sent to the AF_UNIX socket named by
$NOTIFY_SOCKET; a leading '@' means Linux's abstract namespace. Doing it here costs no dependency:
the PyPI packages for it are either unmaintained (`sdnotify`) or need libsystemd headers and a
compiler on every managed host (`systemd-python`, `cysystemd`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

# The watchdog fires after WATCHDOG_USEC without a ping and we ping once a cycle.
# A cycle is one interval plus a collection that may run up to its timeouts: leave this much room.
WATCHDOG_SLACK_SECONDS = 60.0


def socket_address(value: str) -> str | bytes:
    """Return the address to send to for a $NOTIFY_SOCKET value ('@' is the abstract namespace)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def send(message: str, notify_socket: str) -> bool:
    """Send one notification datagram; return False (and log why) when it cannot be sent."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(socket_address(notify_socket))
            sock.sendall(message.encode())
    except OSError as exc:
        # The service manager going away must not stop the agent: it keeps collecting.
        log.warning("cannot notify the service manager at %s: %s", notify_socket, exc)
        return False
    return True


class ServiceNotifier:
    """Tell systemd when the agent is ready, that it is alive each cycle, and when it stops.

    Every method is a no-op when the agent was not started by systemd with a notify socket.
    """

    def __init__(self, notify_socket: str = "", watchdog_usec: int = 0) -> None:
        self.notify_socket = notify_socket
        self.watchdog_usec = watchdog_usec
        self.ready = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceNotifier:
        """Return a notifier for $NOTIFY_SOCKET and $WATCHDOG_USEC (empty: does nothing)."""
        env = os.environ if env is None else env
        try:
            watchdog = int(env.get("WATCHDOG_USEC", "0"))
        except ValueError:
            log.warning("ignoring WATCHDOG_USEC=%r: not a number", env.get("WATCHDOG_USEC"))
            watchdog = 0
        # A watchdog meant for another process (a parent that exec'd us) is not ours.
        pid = env.get("WATCHDOG_PID", "")
        if pid and pid != str(os.getpid()):
            watchdog = 0
        return cls(env.get("NOTIFY_SOCKET", ""), watchdog)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return bool(self.notify_socket)

    def notify(self, *lines: str) -> bool:
        """Send `lines` as one message; False when disabled or not delivered."""
        if not self.enabled:
            return False
        return send("\n".join(lines), self.notify_socket)

    def cycle(self, interval_seconds: float) -> None:
        """Report one finished collection: READY=1 the first time, WATCHDOG=1 every time."""
        if not self.enabled:
            return
        lines = ["WATCHDOG=1"]
        if not self.ready:
            # No MAINPID=: under the self-update launcher the launcher stays the main process.
            lines.insert(0, "READY=1")
        needed_usec = int((interval_seconds + WATCHDOG_SLACK_SECONDS) * 1_000_000)
        if self.watchdog_usec and needed_usec > self.watchdog_usec:
            # The server can lengthen the interval; without this the watchdog would kill an
            # agent that is only waiting for its next cycle.
            self.watchdog_usec = needed_usec
            lines.append(f"WATCHDOG_USEC={needed_usec}")
        if self.notify(*lines):
            self.ready = True

    def status(self, text: str) -> None:
        """Show a one-line status in `systemctl status`."""
        self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        """Say the agent is shutting down."""
        self.notify("STOPPING=1")
