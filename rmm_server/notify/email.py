"""Email notifier: SMTP with STARTTLS (or implicit TLS) and AUTH, plain text plus HTML."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import ClassVar

import aiosmtplib

from rmm_common.errors import InvalidArgument
from rmm_common.yamlnodes import Section
from rmm_server.notify.model import Notification, NotifierDeps, NotifyError
from rmm_server.notify.render import html_body, shown, text_body, title

# A subject longer than this is cut: RFC 5322 advises lines under 78 characters, and mail
# clients show about as much.
SUBJECT_MAX = 200


@dataclass(frozen=True)
class EmailSettings:
    """Which SMTP server to use, as whom, and to whom to write."""

    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    starttls: bool = True
    tls: bool = False  # implicit TLS from the first byte (port 465)
    username: str = ""
    password: str = ""
    ca_file: str = ""  # a private CA's PEM; the system's CAs otherwise
    timeout: float = 10.0
    hello: str = ""  # the name to greet with (EHLO); this host's name otherwise


def subject(notification: Notification) -> str:
    """Return the notification's title as one header line: no CR, LF or other line break
    (a header injection, or a refused message, when an agent-supplied value holds one), bounded."""
    text = " ".join(shown(title(notification)).split())
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 1] + "…"


def parse_smarthost(value: str) -> tuple[str, int]:
    """Split "host:port" (port required, IPv6 in brackets) into its parts."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"smarthost {value!r} must be host:port, e.g. smtp.example.net:587")
    return host, int(port)


class EmailNotifier:
    """Send each notification as one email to a list of addresses."""

    name: ClassVar[str] = "email"

    def __init__(self, receiver: str, settings: EmailSettings, deps: NotifierDeps) -> None:
        self.receiver = receiver
        self.settings = settings
        self.deps = deps
        self.tls_context = (
            ssl.create_default_context(cafile=settings.ca_file or None)
            if settings.starttls or settings.tls
            else None
        )

    @classmethod
    def parse_settings(cls, section: Section) -> EmailSettings:
        """Read smarthost, from, to, starttls, tls, auth, ca_file, timeout and hello."""
        smarthost_node = section.value_node("smarthost")
        smarthost = section.text("smarthost")
        host, port = section.check(smarthost_node, lambda: parse_smarthost(smarthost), ("", 0))
        tls = section.flag("tls", False)
        starttls = section.flag("starttls", not tls)
        username = section.text("auth_username", "")
        password = section.text("auth_password", "")
        ca_file = section.text("ca_file", "")
        if tls and starttls:
            section.where.add(
                section.node, f"{section.context}: choose tls (port 465) or starttls, not both"
            )
        if bool(username) != bool(password):
            section.where.add(
                section.node,
                f"{section.context}: give both auth_username and auth_password, or neither",
            )
        if username and not (tls or starttls):
            section.where.add(
                section.node,
                f"{section.context}: AUTH without TLS would send the password in clear;"
                " set starttls: true or tls: true",
            )
        if ca_file and not Path(ca_file).is_file():
            section.where.add(
                section.value_node("ca_file"),
                f"{section.context}: ca_file {ca_file!r} is not a readable file",
            )
        return EmailSettings(
            host=host,
            port=port,
            sender=section.text("from"),
            to=tuple(section.texts("to", required=True)),
            starttls=starttls,
            tls=tls,
            username=username,
            password=password,
            ca_file=ca_file,
            timeout=section.seconds("timeout", 10.0, minimum=0.001),
            hello=section.text("hello", ""),
        )

    @classmethod
    def create(cls, receiver: str, settings: EmailSettings, deps: NotifierDeps) -> EmailNotifier:
        """Return an email notifier for `receiver`."""
        return cls(receiver, settings, deps)

    def message(self, notification: Notification) -> EmailMessage:
        """Return the email for `notification`: plain text with an HTML alternative."""
        message = EmailMessage()
        message["Subject"] = subject(notification)
        message["From"] = self.settings.sender
        message["To"] = ", ".join(self.settings.to)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.settings.sender.rpartition("@")[2] or None)
        message.set_content(text_body(notification, self.deps.external_url))
        message.add_alternative(html_body(notification, self.deps.external_url), subtype="html")
        return message

    async def send(self, notification: Notification) -> None:
        """Deliver the email; raise NotifyError on failure."""
        settings = self.settings
        server = f"{settings.host}:{settings.port}"
        try:
            await aiosmtplib.send(
                self.message(notification),
                sender=settings.sender,
                recipients=list(settings.to),
                hostname=settings.host,
                port=settings.port,
                username=settings.username or None,
                password=settings.password or None,
                use_tls=settings.tls,
                # True, not None: a server that cannot STARTTLS is an error, never plain text.
                start_tls=settings.starttls,
                tls_context=self.tls_context,
                timeout=settings.timeout,
                local_hostname=settings.hello or None,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise NotifyError(
                f"receiver {self.receiver!r}: {server} refused the login"
                f" ({exc.code} {exc.message}); check auth_username and auth_password",
                retryable=False,
            ) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise NotifyError(
                f"receiver {self.receiver!r}: {server} refused every recipient: {exc.recipients}",
                retryable=False,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise NotifyError(
                f"receiver {self.receiver!r}: {server} answered {exc.code} {exc.message}",
                retryable=exc.code < 500,  # 5xx is permanent in SMTP
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise NotifyError(
                f"receiver {self.receiver!r}: {server}'s certificate is not trusted:"
                f" {exc.verify_message}; set ca_file to its CA",
                retryable=False,
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise NotifyError(
                f"receiver {self.receiver!r}: sending to {server} failed: {exc}"
            ) from exc
