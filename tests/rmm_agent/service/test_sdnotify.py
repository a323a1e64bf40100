"""sd_notify: datagrams to a real unix socket standing in for systemd, and a real agent process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmm_agent.service.sdnotify import WATCHDOG_SLACK_SECONDS, ServiceNotifier, send
from tests.helpers import BIN, ServerProcess, enroll_agent


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound on a path, as systemd's notify socket is."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def receive(sock: socket.socket) -> list[str]:
    """Return the lines of the next datagram."""
    return sock.recv(4096).decode().split("\n")


def test_disabled_without_notify_socket_sends_nothing() -> None:
    notifier = ServiceNotifier.from_env({})
    assert not notifier.enabled
    notifier.cycle(30)
    notifier.stopping()
    assert not notifier.ready


def test_first_cycle_is_ready_then_only_watchdog(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    notifier = ServiceNotifier.from_env({"NOTIFY_SOCKET": path})
    notifier.cycle(30)
    assert receive(sock) == ["READY=1", "WATCHDOG=1"]
    notifier.cycle(30)
    assert receive(sock) == ["WATCHDOG=1"]
    notifier.stopping()
    assert receive(sock) == ["STOPPING=1"]


def test_abstract_namespace_socket() -> None:
    name = f"rmm-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert send("READY=1", "@" + name)
        assert sock.recv(100) == b"READY=1"


def test_watchdog_grows_when_the_interval_outgrows_it(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    sock, path = systemd_socket
    notifier = ServiceNotifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "180000000"})
    notifier.cycle(30)  # 30 s + slack fits in 180 s: no change asked
    assert not any(line.startswith("WATCHDOG_USEC=") for line in receive(sock))
    notifier.cycle(600)
    wanted = int((600 + WATCHDOG_SLACK_SECONDS) * 1_000_000)
    assert receive(sock) == ["WATCHDOG=1", f"WATCHDOG_USEC={wanted}"]


def test_a_watchdog_for_another_pid_is_ignored() -> None:
    env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert ServiceNotifier.from_env(env).watchdog_usec == 0


def test_a_missing_socket_does_not_stop_the_agent(tmp_path: Path) -> None:
    notifier = ServiceNotifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    notifier.cycle(30)  # logs a warning, raises nothing
    assert not notifier.ready  # READY=1 goes again with the next cycle


@pytest.mark.linux
def test_real_agent_notifies_ready_watchdog_and_stopping(
    server: ServerProcess, tmp_path: Path, systemd_socket: tuple[socket.socket, str]
) -> None:
    sock, path = systemd_socket
    state = tmp_path / "agent"
    enroll_agent(server, state)
    log_path = tmp_path / "agent.log"
    agent = subprocess.Popen(
        [str(BIN / "rmm-agent"), "run", "--state-dir", str(state), "--interval", "1"],
        env={**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "180000000"},
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        sock.settimeout(60)  # the first collection reads the software inventory
        messages = [receive(sock)]
        sock.settimeout(10)
        while sum(lines == ["WATCHDOG=1"] for lines in messages) < 2:
            messages.append(receive(sock))
        assert messages[0] == ["READY=1", "WATCHDOG=1"], messages
        started = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        while (lines := receive(sock)) != ["STOPPING=1"]:
            assert lines == ["WATCHDOG=1"], lines
        assert agent.wait(20) == 0, log_path.read_text()
        assert time.monotonic() - started < 20
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
