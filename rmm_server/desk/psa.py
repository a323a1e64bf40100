"""Every ticket event posted to a PSA system's webhook (`rmm-server serve --psa-webhook URL`).

One background thread posts the events in the order they happened, each as one JSON body
({"ticket": {...}, "event": {...}}); a failed post is tried again (three attempts, backing off)
and then logged as lost. The queue is bounded: when the PSA is down for long, the newest events
beyond the bound are dropped and counted in the log rather than holding the server's memory.

With a secret (`--psa-webhook-secret-file`), every post carries `X-RMM-Signature: t=T,v1=HEX`:
HEX is HMAC-SHA256 under the secret of `T.` followed by the body's bytes (T: unix seconds), as
Stripe signs its webhooks, so a receiver knows the post is the server's, unchanged, and recent
(docs/desk.md shows the receiver's check).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from rmm_common.errors import ConfigError
from rmm_server.storage.tickets import TicketEvent, TicketRecord

log = logging.getLogger(__name__)

MAX_QUEUE = 10_000
ATTEMPTS = 3
TIMEOUT_SECONDS = 10.0
SIGNATURE_HEADER = "X-RMM-Signature"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """Return the X-RMM-Signature value of `body` posted at `timestamp` (unix seconds).

    The timestamp is inside the MAC so that a receiver can refuse an old post replayed.
    """
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def read_secret(path: str) -> bytes:
    """Return the webhook secret kept in the file at `path` (surrounding whitespace dropped)."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"--psa-webhook-secret-file {path}: cannot read it ({exc.strerror or exc}); "
            "give a readable file holding the secret the PSA verifies posts with"
        ) from exc
    if len(secret) < 16:
        raise ConfigError(
            f"--psa-webhook-secret-file {path}: the secret is {len(secret)} bytes; use at least "
            "16 (e.g. `openssl rand -hex 32 > FILE`)"
        )
    return secret


def event_body(ticket: TicketRecord, event: TicketEvent) -> dict[str, Any]:
    """Return the JSON body a PSA receives for one event of one ticket."""
    return {
        "ticket": {
            "id": ticket.id,
            "client": ticket.client,
            "site": ticket.site,
            "agent_id": ticket.agent_id,
            "alert_id": ticket.alert_id,
            "title": ticket.title,
            "tier": ticket.tier,
            "priority": ticket.priority,
            "status": ticket.status,
            "assignee": ticket.assignee,
            "opened_at": ticket.opened_at,
            "ack_due_at": ticket.ack_due_at,
            "resolve_due_at": ticket.resolve_due_at,
            "resolved_at": ticket.resolved_at,
            "closed_at": ticket.closed_at,
            "archived_at": ticket.archived_at,
        },
        "event": {"at": event.at, "by": event.by, "kind": event.kind, "text": event.text},
    }


class PsaWebhook:
    """Post ticket events to one URL, in order, from one thread."""

    def __init__(
        self,
        url: str,
        post: Callable[[str, dict[str, Any]], None] | None = None,
        backoff_seconds: float = 1.0,
        max_queue: int = MAX_QUEUE,
        secret: bytes = b"",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`secret` (b"": none) signs every post; `clock` gives its timestamp."""
        self.url = url
        self.secret = secret
        self.clock = clock
        self._client: httpx.Client | None = None
        self._post = post or self._http_post
        self.backoff_seconds = backoff_seconds
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="psa-webhook", daemon=True)
        self.dropped = 0

    def start(self) -> None:
        """Start posting."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Post what is queued (for at most `timeout` seconds), then stop."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("PSA webhook: %d events not posted at shutdown", self._queue.qsize())
            return
        self._thread.join(timeout)

    def __call__(self, ticket: TicketRecord, event: TicketEvent) -> None:
        """Queue one event (a Tickets `on_event` hook: never blocks, never raises)."""
        try:
            self._queue.put_nowait(event_body(ticket, event))
        except queue.Full:
            self.dropped += 1
            log.error(
                "PSA webhook %s is behind by %d events: event %r of ticket %d dropped (%d so far)",
                self.url,
                self._queue.maxsize,
                event.kind,
                ticket.id,
                self.dropped,
            )

    def _http_post(self, url: str, body: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.Client(timeout=TIMEOUT_SECONDS)
        content = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.secret:
            # Signed at each attempt: a retry carries a fresh timestamp, not a stale one.
            headers[SIGNATURE_HEADER] = signature(self.secret, int(self.clock()), content)
        response = self._client.post(url, content=content, headers=headers)
        response.raise_for_status()

    def _run(self) -> None:
        while (body := self._queue.get()) is not None:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    self._post(self.url, body)
                    break
                except Exception as exc:  # the PSA's problem must never reach the desk
                    if attempt == ATTEMPTS:
                        log.error(
                            "PSA webhook %s: event %r of ticket %s lost after %d attempts: %s",
                            self.url,
                            body["event"]["kind"],
                            body["ticket"]["id"],
                            ATTEMPTS,
                            exc,
                        )
                    else:
                        time.sleep(self.backoff_seconds * attempt)
        if self._client is not None:
            self._client.close()
