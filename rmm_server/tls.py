"""TLS for the gRPC port: the server's own CA, its certificate, and agents' client certificates.

With no certificate given, the first start creates a CA (ECDSA P-256, 10 years) and a server
certificate signed by it (1 year) in DATA_DIR/tls/, keys mode 0600. Later starts reuse them and
issue a new server certificate from the same CA when the old one has under 30 days left or lacks
a name it should carry, so agents that pinned the CA's fingerprint keep trusting the server.

The server sends its whole chain (leaf, then CA) in the handshake: an agent holding only the CA's
fingerprint finds the CA in that chain, checks the fingerprint, and from then on trusts that CA
alone. The same CA signs agents' client certificates for mutual TLS (`--require-client-certs`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rmm_common.errors import ConfigError, InvalidArgument, Unauthenticated
from rmm_common.files import write_private
from rmm_common.net import fingerprint_der

log = logging.getLogger(__name__)

TLS_DIR = "tls"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=365)
CLIENT_LIFETIME = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
# Certificates are valid from a little before they are made: clocks differ between hosts.
BACKDATE = dt.timedelta(minutes=5)
MAX_CSR_BYTES = 16 * 1024


def fingerprint(cert: x509.Certificate) -> str:
    """Return the pinning fingerprint of `cert`: "sha256:<hex>" over its DER."""
    return fingerprint_der(cert.public_bytes(serialization.Encoding.DER))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: every TLS stack (grpc's BoringSSL, OpenSSL, Windows, macOS) accepts it.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def default_names() -> list[str]:
    """Return the names a certificate made here carries unless told more: loopback and host."""
    names = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname()
    if hostname and hostname not in names:
        names.append(hostname)
    return names


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _names_in(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def check_names(names: Sequence[str]) -> list[str]:
    """Return `names` (host names or IP addresses) deduplicated, or raise ConfigError."""
    seen: list[str] = []
    for raw in names:
        name = raw.strip().strip("[]")
        bad_host = ":" in name or "/" in name or any(c.isspace() for c in name)
        if not name or (bad_host and not _is_ip(name)):
            raise ConfigError(
                f"--tls-san {raw!r} is not a host name or IP address (e.g. rmm.example.net or "
                "10.0.0.5)"
            )
        canonical = str(ipaddress.ip_address(name)) if _is_ip(name) else name.lower()
        if canonical not in seen:
            seen.append(canonical)
    return seen


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA certificate and its key: signs the server's certificate and agents' client ones."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str, now: dt.datetime | None = None) -> CertificateAuthority:
        """Make a new self-signed CA valid for 10 years."""
        now = now or _now()
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @property
    def pem(self) -> bytes:
        return _cert_pem(self.cert)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)

    def _issue(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        lifetime: dt.timedelta,
        usage: x509.ObjectIdentifier,
        names: Sequence[str] = (),
        now: dt.datetime | None = None,
    ) -> x509.Certificate:
        now = now or _now()
        # A leaf never outlives the CA that vouches for it.
        not_after = min(now + lifetime, self.cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
        return builder.sign(self.key, hashes.SHA256())

    def issue_server(
        self,
        names: Sequence[str],
        lifetime: dt.timedelta = SERVER_LIFETIME,
        now: dt.datetime | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """Make a server key and a certificate for `names` (host names and IP addresses)."""
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        cert = self._issue(
            subject, key.public_key(), lifetime, ExtendedKeyUsageOID.SERVER_AUTH, names, now
        )
        return cert, key

    def sign_client_csr(
        self, csr_pem: str, agent_id: str, lifetime: dt.timedelta = CLIENT_LIFETIME
    ) -> str:
        """Return a client certificate (PEM) for the key in `csr_pem`, named after `agent_id`.

        The request's own subject is ignored: the server decides who the certificate names.
        """
        csr = parse_csr(csr_pem)
        public = csr.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)  # parse_csr checked it
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)])
        cert = self._issue(subject, public, lifetime, ExtendedKeyUsageOID.CLIENT_AUTH)
        return _cert_pem(cert).decode()

    def issued(self, cert: x509.Certificate) -> bool:
        """Say whether this CA signed `cert`."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def parse_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """Return the CSR in `csr_pem`, or raise InvalidArgument saying what is wrong with it."""
    if len(csr_pem) > MAX_CSR_BYTES:
        raise InvalidArgument(f"the certificate request is {len(csr_pem)} bytes; at most 16 KiB")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise InvalidArgument(f"the certificate request is not a PEM CSR: {exc}") from None
    if not csr.is_signature_valid:
        raise InvalidArgument("the certificate request's signature does not match its key")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise InvalidArgument("the certificate request's key must be ECDSA P-256")
    return csr


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the certificate {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM certificate: {exc}") from exc


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read the private key {path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, not an ECDSA key")
    return key


def load_or_create_ca(tls_dir: Path) -> CertificateAuthority:
    """Return the CA kept in `tls_dir`, creating it on the first start."""
    cert_path, key_path = tls_dir / CA_CERT_FILE, tls_dir / CA_KEY_FILE
    if cert_path.exists() or key_path.exists():
        ca = CertificateAuthority(_load_cert(cert_path), _load_key(key_path))
        if ca.cert.public_key() != ca.key.public_key():
            raise ConfigError(
                f"{key_path} is not the key of {cert_path}: restore the pair from a backup (a new "
                "CA means every agent must enroll again)"
            )
        return ca
    _make_dir(tls_dir)
    ca = CertificateAuthority.create(f"rmm CA {socket.gethostname()}")
    try:
        write_private(key_path, _key_pem(ca.key))
        write_private(cert_path, ca.pem)
    except OSError as exc:
        raise ConfigError(f"cannot write the CA into {tls_dir}: {exc}") from exc
    log.info("created the server's CA %s (%s)", cert_path, ca.fingerprint)
    return ca


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc}") from exc


def chain_pem(leaf_and_more: bytes, ca_pem: bytes) -> bytes:
    """Return a PEM chain that ends with the CA, appending it when it is not there yet."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    present = x509.load_pem_x509_certificates(leaf_and_more)
    if any(cert == ca for cert in present):
        return leaf_and_more
    return leaf_and_more.rstrip(b"\n") + b"\n" + ca_pem


@dataclass(slots=True)
class ClientCerts:
    """Agents' client certificates: issued at enrollment, checked on every later agent call."""

    ca: CertificateAuthority
    port: int = 0  # where the mutual-TLS listener is, told to agents at enrollment
    _checked: dict[bytes, str] = field(default_factory=dict)

    def issue(self, csr_pem: str, agent_id: str) -> str:
        """Return a client certificate (PEM) for the agent's key."""
        return self.ca.sign_client_csr(csr_pem, agent_id)

    def check_peer(self, auth_context: Mapping[str, Sequence[bytes]], agent_id: str) -> None:
        """Raise Unauthenticated unless the TLS peer showed our CA's certificate for `agent_id`."""
        pems = auth_context.get("x509_pem_cert") or ()
        if not pems:
            raise Unauthenticated(
                f"agent {agent_id} presented no client certificate: this server requires mutual "
                f"TLS on port {self.port}; enroll the agent again (rmm-agent enroll --force) to "
                "get a certificate"
            )
        pem = pems[0]
        subject = self._checked.get(pem)
        if subject is None:
            try:
                cert = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise Unauthenticated("the client certificate cannot be parsed") from None
            if not self.ca.issued(cert):
                raise Unauthenticated(
                    f"the client certificate of agent {agent_id} was not issued by this server's "
                    "CA: enroll the agent again"
                )
            names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            subject = str(names[0].value) if names else ""
            if len(self._checked) > 100_000:  # bounded: one entry per agent is expected
                self._checked.clear()
            self._checked[pem] = subject
        if subject != agent_id:
            raise Unauthenticated(
                f"the client certificate names agent {subject!r}, but the credential is agent "
                f"{agent_id}'s: each agent must use its own certificate"
            )


@dataclass(slots=True)
class ServerTls:
    """What the gRPC port serves: the chain and key, the CA agents pin, client certificates."""

    chain_pem: bytes  # leaf first, CA last: clients find the CA to pin in what they are shown
    key_pem: bytes
    ca_pem: bytes = b""  # the CA agents pin; empty when the operator's certificate has none
    leaf: x509.Certificate | None = None
    client_certs: ClientCerts | None = None

    @property
    def ca_fingerprint(self) -> str:
        """Return "sha256:<hex>" of the CA agents pin, or "" when there is none."""
        if not self.ca_pem:
            return ""
        return fingerprint(x509.load_pem_x509_certificate(self.ca_pem))

    def credentials(self) -> grpc.ServerCredentials:
        """Server-authenticated TLS: for enrollment, operators and agents without mutual TLS."""
        return grpc.ssl_server_credentials([(self.key_pem, self.chain_pem)])

    def mutual_credentials(self) -> grpc.ServerCredentials:
        """TLS that requires a client certificate signed by our CA (the mutual-TLS port).

        grpcio's Python API can only not request a client certificate or require one, never
        request one optionally; so mutual TLS has a port of its own and enrollment (which has no
        certificate yet) and operators stay on the main port.
        """
        assert self.client_certs is not None
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.chain_pem)],
            root_certificates=self.client_certs.ca.pem,
            require_client_auth=True,
        )


def load_or_create(
    data_dir: Path,
    extra_names: Sequence[str] = (),
    lifetime: dt.timedelta = SERVER_LIFETIME,
    now: dt.datetime | None = None,
) -> ServerTls:
    """Return the server's own CA and certificate from DATA_DIR/tls, making or renewing them."""
    now = now or _now()
    tls_dir = data_dir / TLS_DIR
    ca = load_or_create_ca(tls_dir)
    names = check_names([*default_names(), *extra_names])
    cert_path, key_path = tls_dir / SERVER_CERT_FILE, tls_dir / SERVER_KEY_FILE
    leaf: x509.Certificate | None = None
    if cert_path.exists() and key_path.exists():
        leaf = _load_cert(cert_path)
        why = _why_reissue(leaf, ca, names, now)
        if why:
            log.info("issuing a new server certificate: %s", why)
            leaf = None
    if leaf is None:
        leaf, key = ca.issue_server(names, lifetime, now)
        try:
            write_private(key_path, _key_pem(key))
            write_private(cert_path, _cert_pem(leaf))
        except OSError as exc:
            raise ConfigError(f"cannot write the server certificate into {tls_dir}: {exc}") from exc
        log.info(
            "server certificate %s for %s, valid until %s",
            cert_path,
            ", ".join(names),
            leaf.not_valid_after_utc.date().isoformat(),
        )
    key_pem = key_path.read_bytes()
    if _load_key(key_path).public_key() != leaf.public_key():
        raise ConfigError(
            f"{key_path} is not the key of {cert_path}: delete both and start again (the CA stays, "
            "so agents keep trusting the server)"
        )
    return ServerTls(
        chain_pem=_cert_pem(leaf) + ca.pem,
        key_pem=key_pem,
        ca_pem=ca.pem,
        leaf=leaf,
        client_certs=ClientCerts(ca),
    )


def _why_reissue(
    leaf: x509.Certificate, ca: CertificateAuthority, names: Sequence[str], now: dt.datetime
) -> str:
    left = leaf.not_valid_after_utc - now
    if left < RENEW_BEFORE:
        return f"the old one has {max(left.days, 0)} days left"
    if not ca.issued(leaf):
        return "the old one was not issued by the CA in the same folder"
    missing = [name for name in names if name not in _names_in(leaf)]
    if missing:
        return f"the old one lacks {', '.join(missing)}"
    return ""


def from_files(
    cert: Path, key: Path, ca: Path | None, data_dir: Path, mutual: bool = False
) -> ServerTls:
    """Return the operator's certificate and key (and CA, to publish and pin).

    With `mutual`, agents' client certificates come from the server's own CA in DATA_DIR/tls:
    signing needs a CA key, and only this server checks them, so they need not share the
    operator's CA.
    """
    try:
        chain = cert.read_bytes()
        key_pem = key.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS certificate or key: {exc}") from exc
    try:
        certs = x509.load_pem_x509_certificates(chain)
    except ValueError as exc:
        raise ConfigError(f"--tls-cert {cert} is not a PEM certificate: {exc}") from exc
    if _load_key(key).public_key() != certs[0].public_key():
        raise ConfigError(f"--tls-key {key} is not the key of --tls-cert {cert}")
    ca_pem = b""
    if ca is not None:
        ca_pem = _cert_pem(_load_cert(ca))
        chain = chain_pem(chain, ca_pem)
    return ServerTls(
        chain_pem=chain,
        key_pem=key_pem,
        ca_pem=ca_pem,
        leaf=certs[0],
        client_certs=ClientCerts(load_or_create_ca(data_dir / TLS_DIR)) if mutual else None,
    )


def show_ca(data_dir: Path) -> tuple[str, str]:
    """Return the server's own CA (PEM) and its fingerprint, for `rmm-server ca show`."""
    path = data_dir / TLS_DIR / CA_CERT_FILE
    if not path.exists():
        raise ConfigError(
            f"{path} does not exist: start `rmm-server serve --data-dir {data_dir}` once without "
            "--insecure or --tls-cert to create it"
        )
    cert = _load_cert(path)
    return _cert_pem(cert).decode(), fingerprint(cert)
