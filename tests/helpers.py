"""Real processes on loopback for the tests: a server, agents, and the `rmm` command line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # the thing is not up yet
            last_error = exc
        else:
            if value:
                return value
        time.sleep(every)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET `url` and return (status, body), without raising on HTTP errors."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class ServerProcess:
    data_dir: Path
    grpc_port: int
    http_port: int
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    insecure: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def command(self) -> list[str]:
        """The command line start() runs (a subclass may wrap it, in prlimit say)."""
        return [
            str(BIN / "rmm-server"),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--grpc-listen",
            self.grpc_address,
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            *(["--insecure"] if self.insecure else []),
            *self.extra_args,
        ]

    def start(self, timeout: float = 60.0) -> Self:
        # free_port() only says a port was free when asked: the other test worker may take it
        # before this server binds it. Such a start is retried on new ports (a test that means
        # a busy port runs rmm-server itself).
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except AssertionError as error:
                if "address already in use" not in str(error) or attempt == 2:
                    raise
                self.grpc_port, self.http_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> Self:
        # Generous: importing the server takes ~2 s of CPU, which becomes 20 s and more while
        # the other test worker saturates both cores; a server that is up answers at once anyway.
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(
                lambda: self._alive() and http_get(self.http_url + "/healthz", 1)[0] == 200,
                timeout,
                f"the server to answer /healthz (log: {self.log_path})",
            )
        except BaseException:
            self.kill()  # a server that never came up is not left running for the next test
            raise
        finally:
            log.close()  # the child holds its own copy
        return self

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited {self.process.returncode}: {self.log()}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def metrics(self) -> str:
        status, body = http_get(self.http_url + "/metrics")
        assert status == 200, body
        return body.decode()

    def kill(self) -> None:
        """End the server at once, if it runs (teardown after a failure: no questions asked)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"server did not stop within {timeout}s after signal {sig}"
            ) from None


def cli_env(server: ServerProcess, token: str | None = None) -> dict[str, str]:
    """Return the environment under which `rmm` talks to `server`."""
    env = dict(os.environ)
    env.update(
        RMM_SERVER=server.grpc_address,
        RMM_TOKEN=server.admin_token if token is None else token,
    )
    if server.insecure:
        env["RMM_INSECURE"] = "1"
    return env


def rmm(
    server: ServerProcess, *args: str, token: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the `rmm` command line against `server`."""
    result = subprocess.run(
        [str(BIN / "rmm"), *args],
        env=cli_env(server, token),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"rmm {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def rmm_json(server: ServerProcess, *args: str) -> Any:
    """Run `rmm ... --output json` and return the parsed output."""
    return json.loads(rmm(server, *args, "--output", "json").stdout)


def agent_cmd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `rmm-agent` to completion."""
    return subprocess.run(
        [str(BIN / "rmm-agent"), *args], capture_output=True, text=True, timeout=timeout
    )


def enroll_with_token(
    server: ServerProcess, state_dir: Path, token: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run `rmm-agent enroll` against `server` with `token` (add --insecure or --ca-cert)."""
    return agent_cmd(
        "enroll",
        "--server",
        server.grpc_address,
        "--token",
        token,
        "--state-dir",
        str(state_dir),
        *extra,
    )


def enroll_agent(
    server: ServerProcess, state_dir: Path, *tags: str, client: str = "acme", site: str = "hq"
) -> str:
    """Create a token and enroll an agent with it; return the agent id."""
    token = rmm_json(server, "tokens", "create", "--client", client, "--site", site)["token"]
    tag_args = [arg for tag in tags for arg in ("--tag", tag)]
    result = enroll_with_token(server, state_dir, token, "--insecure", *tag_args)
    assert result.returncode == 0, result.stderr
    return str(json.loads((state_dir / "identity.json").read_text())["agent_id"])


def end_process(
    process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 30.0
) -> int | None:
    """Signal `process` and wait for it; SIGKILL it (then fail) if it outlasts `timeout`.

    For finally blocks and fixture teardowns: whatever happened, the process has ended on return.
    """
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(
            f"{process.args!r} did not end within {timeout}s after signal {sig}: killed"
        ) from None


def end_all(*processes: ServerProcess | subprocess.Popen[bytes] | None) -> None:
    """End every one of `processes` (a server with stop(), anything else with end_process), in
    order, each even when one before it failed; then raise the first failure, if any."""
    failure: BaseException | None = None
    for process in processes:
        try:
            if isinstance(process, ServerProcess):
                if process.process is not None and process.process.poll() is None:
                    process.stop()
            else:
                end_process(process)
        except BaseException as exc:  # the rest still end; the first failure is raised below
            if isinstance(process, ServerProcess):
                process.kill()
            failure = failure or exc
    if failure is not None:
        raise failure


def start_agent(
    state_dir: Path, log_path: Path, interval: float = 1.0, *extra: str
) -> subprocess.Popen[bytes]:
    """Start `rmm-agent run` in the background (end it with end_process, in a finally)."""
    return subprocess.Popen(
        [
            str(BIN / "rmm-agent"),
            "run",
            "--state-dir",
            str(state_dir),
            "--interval",
            str(interval),
            *extra,
        ],
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
