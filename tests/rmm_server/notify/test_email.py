"""The email notifier against a real SMTP server on loopback (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from prometheus_client import CollectorRegistry

from rmm_server.notify import Dispatcher, Notification, NotifyError, parse_notify_config
from tests.helpers import free_port
from tests.rmm_server.notify.support import FakeTime, notice

USER, PASSWORD = "rmm", "s3cret-pass"


@dataclass
class Mailbox:
    """What the SMTP server accepted, and who logged in."""

    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    port: int
    ca_file: Path
    mailbox: Mailbox


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 that demands STARTTLS before AUTH, and AUTH before mail."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=mailbox.authenticate,
    )
    controller.start()
    yield SmtpServer(port, cert, mailbox)
    controller.stop()


def email_config(smtp: SmtpServer, password: str = "${SMTP_PASSWORD}") -> str:
    return f"""
receivers:
  - name: l1-desk
    email:
      smarthost: 127.0.0.1:{smtp.port}
      from: rmm@msp.example
      to: [desk@msp.example, lead@msp.example]
      auth_username: {USER}
      auth_password: "{password}"
      ca_file: {smtp.ca_file}
      timeout: 5s
delivery: {{attempts: 2, initial_backoff: 1s, jitter: 0s}}
external_url: https://rmm.msp.example
route:
  receiver: l1-desk
  group_wait: 0s
"""


def test_email_over_starttls_with_auth(smtp: SmtpServer) -> None:
    config = parse_notify_config(email_config(smtp), env={"SMTP_PASSWORD": PASSWORD})

    async def scenario() -> None:
        fake = FakeTime()
        dispatcher = Dispatcher(config, fake.clock, fake.sleep)
        await dispatcher.start()
        try:
            for index in range(3):
                await dispatcher.submit(
                    notice(
                        alert_id=f"d{index}",
                        rule="DiskLow",
                        severity="warning",
                        agent_id=f"agent-{index}",
                        hostname=f"srv-{index}",
                        labels={"mountpoint": "/var"},
                        annotations={"summary": "disk <10% free"},
                        value=0.93,
                    )
                )
            await dispatcher.flush()
        finally:
            await dispatcher.stop()

    asyncio.run(scenario())
    assert smtp.mailbox.logins == [USER]
    assert len(smtp.mailbox.messages) == 1
    envelope, message = smtp.mailbox.messages[0]
    assert envelope.mail_from == "rmm@msp.example"
    assert envelope.rcpt_tos == ["desk@msp.example", "lead@msp.example"]
    assert message["Subject"] == "[FIRING:3] DiskLow acme/hq"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    assert (
        "[warning/L1] DiskLow on srv-2 (acme/hq) mountpoint=/var value=0.93: disk <10% free" in text
    )
    assert "https://rmm.msp.example" in text
    assert "disk &lt;10% free" in html.get_content()


def test_wrong_password_fails_without_retrying(smtp: SmtpServer) -> None:
    config = parse_notify_config(email_config(smtp, password="wrong"))
    failures: list[tuple[str, Notification, NotifyError]] = []

    async def scenario() -> None:
        fake = FakeTime()
        registry = CollectorRegistry()
        dispatcher = Dispatcher(
            config, fake.clock, fake.sleep, lambda *failure: failures.append(failure), registry
        )
        await dispatcher.start()
        try:
            await dispatcher.submit(notice())
            await dispatcher.flush()
        finally:
            await dispatcher.stop()
        labels = {"receiver": "l1-desk", "notifier": "email"}
        assert registry.get_sample_value("rmm_notifications_failed_total", labels) == 1
        assert not registry.get_sample_value("rmm_notification_retries_total", labels)

    asyncio.run(scenario())
    assert smtp.mailbox.messages == []
    assert len(failures) == 1
    assert "refused the login" in str(failures[0][2])
    assert "auth_password" in str(failures[0][2])


def test_untrusted_certificate_is_refused(smtp: SmtpServer, tmp_path: Path) -> None:
    text = email_config(smtp).replace(f"      ca_file: {smtp.ca_file}\n", "")
    config = parse_notify_config(text, env={"SMTP_PASSWORD": PASSWORD})
    failures: list[str] = []

    async def scenario() -> None:
        fake = FakeTime()
        dispatcher = Dispatcher(
            config, fake.clock, fake.sleep, lambda r, n, e: failures.append(str(e))
        )
        await dispatcher.start()
        try:
            await dispatcher.submit(notice())
            await dispatcher.flush()
        finally:
            await dispatcher.stop()

    asyncio.run(scenario())
    assert smtp.mailbox.messages == []
    assert len(failures) == 1
    assert "ca_file" in failures[0]


def test_agent_text_cannot_inject_headers_or_html(smtp: SmtpServer) -> None:
    """A label value with CR LF and a header after it, grouped on: the subject stays one line
    (no Bcc added, the message still sent) and the HTML shows the text, never its markup."""
    config = parse_notify_config(
        email_config(smtp).replace(
            "  group_wait: 0s", "  group_wait: 0s\n  group_by: [mountpoint]"
        ),
        env={"SMTP_PASSWORD": PASSWORD},
    )
    hostile = "/var\r\nBcc: thief@evil.example\r\n\r\n<script>alert(1)</script>\u2028x"

    async def scenario() -> None:
        fake = FakeTime()
        dispatcher = Dispatcher(config, fake.clock, fake.sleep)
        await dispatcher.start()
        try:
            await dispatcher.submit(
                notice(
                    hostname="srv-<b>1</b>",
                    labels={"mountpoint": hostile},
                    annotations={"summary": f"full: {hostile}", "description": hostile},
                )
            )
            await dispatcher.flush()
        finally:
            await dispatcher.stop()

    asyncio.run(scenario())
    ((envelope, message),) = smtp.mailbox.messages
    assert envelope.rcpt_tos == ["desk@msp.example", "lead@msp.example"]
    assert message["Bcc"] is None
    subject = message["Subject"]
    assert "\r" not in subject and "\n" not in subject and "\u2028" not in subject
    assert subject.startswith("[FIRING:1] AgentOffline acme/hq /var\\r\\nBcc: thief@evil")
    html = message.get_body(("html",))
    plain = message.get_body(("plain",))
    assert html is not None and plain is not None
    assert "<script>" not in html.get_content() and "&lt;script&gt;" in html.get_content()
    assert "srv-&lt;b&gt;1&lt;/b&gt;" in html.get_content()
    # In the text part every alert is one line: no value starts a line of its own.
    assert not any(line.startswith("Bcc:") for line in plain.get_content().splitlines())
