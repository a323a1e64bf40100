"""The PSA webhook: each ticket event posted in order to a real HTTP receiver, retried when
the receiver fails, and never blocking or failing the desk when the PSA is down."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rmm_server.desk.psa import PsaWebhook
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
