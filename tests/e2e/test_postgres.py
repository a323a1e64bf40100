"""`rmm-server serve --db postgresql://...` end to end: a real agent enrolls and reports, `rmm`
lists it and runs a script on it, everything lands in PostgreSQL; a database that is down at start
is waited for; one behind this release is refused with the command that fixes it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from rmm_proto import commands_pb2
from rmm_server.storage.migrate import engine_url, head_revision, upgrade
from rmm_server.storage.store import create_store_engine
from tests.helpers import (
    BIN,
    ServerProcess,
    end_process,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)


def server_on(url: str, base: Path, *extra: str) -> ServerProcess:
    return ServerProcess(
        data_dir=base / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=base / "server.log",
        extra_args=["--db", url, *extra],
    )


def scalar(url: str, sql: str) -> object:
    engine = create_engine(engine_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def test_an_agent_enrolls_reports_and_runs_a_script_through_postgresql(
    pg_url: str, tmp_path: Path
) -> None:
    server = server_on(pg_url, tmp_path).start(timeout=60)
    agent_process: subprocess.Popen[bytes] | None = None
    try:
        assert f"database schema migrated from empty to {head_revision()}" in server.log()
        state_dir = tmp_path / "agent"
        agent_id = enroll_agent(server, state_dir, "pg")
        agent_process = start_agent(state_dir, tmp_path / "agent.log", 1.0)

        def reported() -> bool:
            [shown] = rmm_json(server, "agents", "list")
            return bool(shown["id"] == agent_id and shown["status"] == "online")

        wait_for(reported, 60, "the agent online in `rmm agents list`")
        listed = rmm(server, "agents", "list").stdout
        assert agent_id[:12] in listed or "pg" in listed

        script = tmp_path / "hello.sh"
        script.write_text('echo "hello from $(hostname) on postgres"\n')
        result = rmm(server, "run", "--target", agent_id, "--script", str(script))
        assert "succeeded" in result.stdout and "on postgres" in result.stdout

        # It is all in PostgreSQL, none of it in a SQLite file beside the server.
        assert not (tmp_path / "server" / "rmm.sqlite3").exists()
        reports = scalar(pg_url, f"SELECT count(*) FROM reports WHERE agent_id = '{agent_id}'")
        assert isinstance(reports, int) and reports >= 1
        succeeded = commands_pb2.CommandStatus.COMMAND_SUCCEEDED
        assert scalar(pg_url, f"SELECT count(*) FROM commands WHERE status = {succeeded}") == 1
        audited = scalar(
            pg_url,
            "SELECT string_agg(action, ',' ORDER BY seq) FROM audit_log "
            f"WHERE target = '{agent_id}' AND action LIKE 'command.%'",
        )
        assert audited == "command.sent,command.result"

        # A restart finds the schema at head and the agent where it was.
        server.stop()
        server.start(timeout=60)
        assert server.log().count("database schema migrated") == 1
        wait_for(reported, 60, "the agent back online after the server's restart")
    finally:
        try:
            end_process(agent_process)
        finally:
            server.stop()


class LateProxy:
    """A TCP port that forwards to PostgreSQL once `open()` is called: a database that comes up
    after the server does."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            return  # the other side closed; the finally shuts both down
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()


def test_a_database_down_at_start_is_waited_for(pg_url: str, tmp_path: Path) -> None:
    pg = pg_url.rsplit("@", 1)[1].split("/", 1)[0]
    host, port = pg.rsplit(":", 1)
    proxy = LateProxy((host, int(port)))
    name = pg_url.rsplit("/", 1)[1]
    # A password in the URL (trust auth ignores it) must never reach the log.
    late_url = f"postgresql://postgres:s3cret@127.0.0.1:{proxy.port}/{name}"
    server = server_on(late_url, tmp_path, "--db-wait", "90s")
    try:
        log = server.log_path.open("ab")
        server.process = subprocess.Popen(
            [str(BIN / "rmm-server"), "serve", "--data-dir", str(server.data_dir),
             "--grpc-listen", server.grpc_address, "--http-listen",
             f"127.0.0.1:{server.http_port}", "--insecure", *server.extra_args],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(
            lambda: server.log().count("unreachable (attempt") >= 3, 60, "three logged retries"
        )
        assert server.process.poll() is None, server.log()
        proxy.open()
        wait_for(lambda: "reachable after" in server.log(), 60, "the database reached")
        wait_for(
            lambda: server._alive() and "admin operator token" in server.log(), 60, "the start"
        )
        assert "s3cret" not in server.log()
        assert "postgres:***@127.0.0.1" in server.log()
    finally:
        try:
            if server.process is not None:
                server.stop()
        finally:
            proxy.close()


# Plaintext (--insecure) is refused on the default 0.0.0.0 before the database is looked at.
LOOPBACK = ("--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")


def test_a_database_that_stays_down_ends_the_start_with_the_fix(tmp_path: Path) -> None:
    url = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/rmm"
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "rmm-server"), "serve", "--data-dir", str(tmp_path / "server"),
         *LOOPBACK, "--insecure", "--db", url, "--db-wait", "3s"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started >= 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rmm-server: database postgresql://postgres:***@127.0.0.1:"), last
    assert "unreachable after" in last and "--db-wait" in last and "s3cret" not in result.stderr


def test_a_database_behind_this_release_is_refused_with_the_command(
    pg_url: str, tmp_path: Path
) -> None:
    engine = create_store_engine(pg_url)
    try:
        upgrade(engine, "0002")
    finally:
        engine.dispose()
    result = subprocess.run(
        [str(BIN / "rmm-server"), "serve", "--data-dir", str(tmp_path / "server"),
         *LOOPBACK, "--insecure", "--db", pg_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        f"is at schema revision 0002, this server needs {head_revision()}: back it up, then run "
        f"`rmm-server migrate --db {pg_url}`"
    ) in result.stderr
