"""The PSA webhook: each ticket event posted in order to a real HTTP receiver, retried when
the receiver fails, and never blocking or failing the desk when the PSA is down."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rmm_common.errors import ConfigError
from rmm_server.cli import main as serve_main
from rmm_server.desk.psa import PsaWebhook, read_secret, signature
from rmm_server.storage.tickets import TicketEvent, TicketRecord
from tests.helpers import wait_for


class Receiver:
    """A real HTTP server that answers 503 to its first `fail` posts, then keeps bodies."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[Any] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(503)
                else:
                    receiver.bodies.append(body)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/psa"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(fail=2)
    yield found
    found.server.shutdown()
    found.server.server_close()


def ticket(number: int) -> TicketRecord:
    return TicketRecord(
        number, "c1", "acme", "hq", "", "", "Printer", "L1", "info", "new", "", 1.0, "alice", 1.0
    )


def test_events_are_posted_in_order_and_retried(receiver: Receiver) -> None:
    psa = PsaWebhook(receiver.url, backoff_seconds=0.05)
    psa.start()
    try:
        for number, kind in ((1, "opened"), (1, "note"), (2, "opened")):
            psa(ticket(number), TicketEvent(2.0, "alice", kind, f"{kind} text"))
        wait_for(lambda: len(receiver.bodies) == 3, 10, "three posts")
    finally:
        psa.stop()
    got = [(b["ticket"]["id"], b["event"]["kind"]) for b in receiver.bodies]
    assert got == [(1, "opened"), (1, "note"), (2, "opened")]  # the 503s were retried
    assert receiver.bodies[0]["ticket"]["client"] == "acme"
    assert receiver.bodies[1]["event"] == {
        "at": 2.0,
        "by": "alice",
        "kind": "note",
        "text": "note text",
    }


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    release = threading.Event()
    posted: list[Any] = []

    def slow(url: str, body: dict[str, Any]) -> None:
        release.wait(10)
        posted.append(body)

    psa = PsaWebhook("http://psa.invalid/", post=slow, max_queue=2)
    psa.start()
    try:
        for number in range(1, 6):
            psa(ticket(number), TicketEvent(2.0, "alice", "opened", ""))
        assert psa.dropped >= 2  # never blocked: the caller went on
    finally:
        release.set()
        psa.stop()
    assert len(posted) == 5 - psa.dropped


def receiver_check(secret: bytes, header: str, body: bytes, now: float) -> bool:
    """The receiver's check as docs/desk.md gives it to PSA integrators (the clock passed in)."""
    parts = dict(item.partition("=")[::2] for item in header.split(","))
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > 300:
        return False  # missing, or too old: a replay
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


class SigningReceiver:
    """A real HTTP server that accepts only posts signed with its secret (401 otherwise)."""

    def __init__(self, secret: bytes) -> None:
        self.bodies: list[Any] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers.get("X-RMM-Signature", "")
                if receiver_check(secret, header, raw, time.time()):
                    receiver.bodies.append(json.loads(raw))
                    self.send_response(200)
                else:
                    receiver.refused += 1
                    self.send_response(401)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/psa"


@pytest.fixture
def signing_receiver() -> Iterator[SigningReceiver]:
    found = SigningReceiver(b"the-psa-shared-secret-0123456789")
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_signed_posts_are_accepted_by_the_receivers_check(
    signing_receiver: SigningReceiver,
) -> None:
    psa = PsaWebhook(
        signing_receiver.url, backoff_seconds=0.01, secret=b"the-psa-shared-secret-0123456789"
    )
    psa.start()
    try:
        psa(ticket(7), TicketEvent(2.0, "alice", "opened", "Printer"))
        wait_for(lambda: len(signing_receiver.bodies) == 1, 10, "a signed post accepted")
    finally:
        psa.stop()
    assert signing_receiver.refused == 0
    assert signing_receiver.bodies[0]["ticket"]["id"] == 7


@pytest.mark.parametrize(
    ("secret", "clock_offset"),
    [
        (b"a-wrong-secret-the-psa-never-had", 0.0),  # not the shared secret
        (b"", 0.0),  # unsigned
        (b"the-psa-shared-secret-0123456789", -3600.0),  # right secret, an hour-old timestamp
    ],
    ids=["wrong-secret", "unsigned", "replayed"],
)
def test_a_post_not_signed_with_the_shared_secret_now_is_refused(
    signing_receiver: SigningReceiver, secret: bytes, clock_offset: float
) -> None:
    psa = PsaWebhook(
        signing_receiver.url,
        backoff_seconds=0.01,
        secret=secret,
        clock=lambda: time.time() + clock_offset,
    )
    psa.start()
    try:
        psa(ticket(7), TicketEvent(2.0, "alice", "opened", "Printer"))
        wait_for(lambda: signing_receiver.refused == 3, 10, "three refused attempts")
    finally:
        psa.stop()
    assert signing_receiver.bodies == []


def test_a_changed_body_fails_the_signature() -> None:
    body = b'{"ticket":{"id":7},"event":{"kind":"opened"}}'
    header = signature(b"the-psa-shared-secret-0123456789", 1_800_000_000, body)
    assert receiver_check(b"the-psa-shared-secret-0123456789", header, body, 1_800_000_000)
    changed = body.replace(b"opened", b"closed")
    assert not receiver_check(b"the-psa-shared-secret-0123456789", header, changed, 1_800_000_000)


def test_the_secret_file_is_checked(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16"):
        read_secret(str(short))
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret(str(tmp_path / "missing"))
    good = tmp_path / "secret"
    good.write_text("0123456789abcdef0123\n")
    assert read_secret(str(good)) == b"0123456789abcdef0123"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--psa-webhook-secret-file", "SECRET"], "give the URL too"),
        (
            ["--psa-webhook", "http://127.0.0.1:9/", "--psa-webhook-secret-file", "SHORT"],
            "at least 16",
        ),
        (["--msp-name", "Acme\u202eTI"], "--msp-name 'Acme\\u202eTI' holds control characters"),
    ],
    ids=["secret-without-url", "short-secret", "msp-name-with-bidi"],
)
def test_serve_refuses_wrong_options_before_it_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "SECRET").write_text("0123456789abcdef0123")
    (tmp_path / "SHORT").write_text("abc")
    args = [str(tmp_path / a) if a in ("SECRET", "SHORT") else a for a in args]
    result = CliRunner().invoke(serve_main, ["serve", "--data-dir", str(tmp_path / "d"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
