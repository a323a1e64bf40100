"""The server's own CA and certificates, client certificates, and pinning by fingerprint."""

from __future__ import annotations

import datetime as dt
import hashlib
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rmm_agent.transport import make_client_key
from rmm_common.errors import ConfigError, InvalidArgument, Unauthenticated
from rmm_common.pinning import fetch_pinned_ca, normalize_fingerprint
from rmm_server import tls


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_first_start_creates_a_private_ca_and_server_certificate(tmp_path: Path) -> None:
    server = tls.load_or_create(tmp_path, ["rmm.example.net", "10.0.0.5"])
    folder = tmp_path / "tls"
    assert mode(folder) == 0o700
    for name in ("ca.pem", "ca.key", "server.pem", "server.key"):
        assert mode(folder / name) == 0o600, name
    ca, leaf = load(folder / "ca.pem"), load(folder / "server.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > dt.timedelta(days=3649)
    assert dt.timedelta(days=364) < leaf.not_valid_after_utc - leaf.not_valid_before_utc
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }
    assert {"localhost", "127.0.0.1", "::1", "rmm.example.net", "10.0.0.5"} <= names
    # The fingerprint agents pin is SHA-256 over the CA's DER.
    der = ca.public_bytes(serialization.Encoding.DER)
    assert server.ca_fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()
    # The handshake shows the whole chain: leaf, then the CA.
    chain = x509.load_pem_x509_certificates(server.chain_pem)
    assert chain == [leaf, ca]


def test_second_start_reuses_the_same_files(tmp_path: Path) -> None:
    tls.load_or_create(tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()}
    again = tls.load_or_create(tmp_path)
    after = {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()}
    assert before == after
    assert again.chain_pem == before["server.pem"] + before["ca.pem"]


def test_an_expiring_certificate_is_renewed_under_the_same_ca(tmp_path: Path) -> None:
    first = tls.load_or_create(tmp_path, lifetime=dt.timedelta(days=20))
    old_leaf = load(tmp_path / "tls" / "server.pem")
    renewed = tls.load_or_create(tmp_path)
    new_leaf = load(tmp_path / "tls" / "server.pem")
    assert new_leaf.serial_number != old_leaf.serial_number
    assert new_leaf.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=360)
    assert renewed.ca_fingerprint == first.ca_fingerprint  # pins made before still hold
    new_leaf.verify_directly_issued_by(load(tmp_path / "tls" / "ca.pem"))
    assert mode(tmp_path / "tls" / "server.key") == 0o600


def test_a_new_name_reissues_the_certificate(tmp_path: Path) -> None:
    tls.load_or_create(tmp_path)
    old = load(tmp_path / "tls" / "server.pem")
    tls.load_or_create(tmp_path, ["rmm.example.net"])
    new = load(tmp_path / "tls" / "server.pem")
    assert new.serial_number != old.serial_number
    san = new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "rmm.example.net" in san.get_values_for_type(x509.DNSName)


def test_bad_names_and_mismatched_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--tls-san 'a b'"):
        tls.load_or_create(tmp_path, ["a b"])
    tls.load_or_create(tmp_path / "one")
    tls.load_or_create(tmp_path / "two")
    (tmp_path / "one" / "tls" / "server.key").write_bytes(
        (tmp_path / "two" / "tls" / "server.key").read_bytes()
    )
    with pytest.raises(ConfigError, match="is not the key of"):
        tls.load_or_create(tmp_path / "one")


def csr_for(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, name: str = "x") -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_client_certificates_name_the_agent_not_the_request(tmp_path: Path) -> None:
    server = tls.load_or_create(tmp_path)
    assert server.client_certs is not None
    key = ec.generate_private_key(ec.SECP256R1())
    pem = server.client_certs.issue(csr_for(key, "someone-else"), "agent-1")
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "agent-1"
    assert cert.public_key() == key.public_key()
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(load(tmp_path / "tls" / "ca.pem"))


def test_bad_certificate_requests_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="not a PEM CSR"):
        tls.parse_csr("hello")
    with pytest.raises(InvalidArgument, match="ECDSA P-256"):
        tls.parse_csr(csr_for(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(InvalidArgument, match="at most 16 KiB"):
        tls.parse_csr("x" * 20_000)
    _, csr = make_client_key()  # what the agent sends
    assert tls.parse_csr(csr).is_signature_valid


def test_peer_check_wants_our_ca_and_the_agents_own_name(tmp_path: Path) -> None:
    server = tls.load_or_create(tmp_path / "ours")
    other = tls.load_or_create(tmp_path / "other")
    assert server.client_certs is not None and other.client_certs is not None
    checker = server.client_certs
    checker.port = 50052
    key = ec.generate_private_key(ec.SECP256R1())
    mine = server.client_certs.issue(csr_for(key), "agent-1").encode()
    forged = other.client_certs.issue(csr_for(key), "agent-1").encode()
    checker.check_peer({"x509_pem_cert": [mine]}, "agent-1")
    checker.check_peer({"x509_pem_cert": [mine]}, "agent-1")  # cached: same answer
    with pytest.raises(Unauthenticated, match=r"no client certificate.*port 50052"):
        checker.check_peer({"transport_security_type": [b"ssl"]}, "agent-1")
    with pytest.raises(Unauthenticated, match="not issued by this server's CA"):
        checker.check_peer({"x509_pem_cert": [forged]}, "agent-1")
    with pytest.raises(Unauthenticated, match=r"names agent 'agent-1'.*agent-2's"):
        checker.check_peer({"x509_pem_cert": [mine]}, "agent-2")


def test_operator_files_get_their_ca_appended_to_the_chain(tmp_path: Path) -> None:
    ca = tls.CertificateAuthority.create("operator CA")
    leaf, key = ca.issue_server(["rmm.example.net"])
    (tmp_path / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    server = tls.from_files(
        tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem", tmp_path / "data"
    )
    assert x509.load_pem_x509_certificates(server.chain_pem) == [leaf, ca.cert]
    assert server.ca_fingerprint == ca.fingerprint
    assert server.client_certs is None and not (tmp_path / "data").exists()
    # Mutual TLS with the operator's certificate: client certificates from our own CA.
    mutual = tls.from_files(
        tmp_path / "cert.pem", tmp_path / "key.pem", None, tmp_path / "data", mutual=True
    )
    assert mutual.ca_fingerprint == ""  # nothing to pin: the operator's CA was not given
    assert mutual.client_certs is not None
    assert (tmp_path / "data" / "tls" / "ca.key").exists()
    other_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "other.key").write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="is not the key of --tls-cert"):
        tls.from_files(tmp_path / "cert.pem", tmp_path / "other.key", None, tmp_path / "data")


def test_fingerprints_are_normalized() -> None:
    hex64 = "ab" * 32
    assert normalize_fingerprint(f"sha256:{hex64}") == f"sha256:{hex64}"
    openssl_form = ":".join(["AB"] * 32)
    assert normalize_fingerprint(openssl_form) == f"sha256:{hex64}"
    assert normalize_fingerprint(f"SHA256:{hex64.upper()}") == f"sha256:{hex64}"
    for bad in ("", "sha256:abc", "md5:" + hex64, hex64 + "00"):
        with pytest.raises(ConfigError, match="not a SHA-256 fingerprint"):
            normalize_fingerprint(bad)


@pytest.fixture
def grpc_tls_port(tmp_path: Path) -> Iterator[tuple[int, tls.ServerTls]]:
    """A real gRPC server on loopback serving our own certificate and chain."""
    server_tls = tls.load_or_create(tmp_path)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", server_tls.credentials())
    # The same port on another loopback address, which the certificate does not name.
    server.add_secure_port(f"127.0.0.2:{port}", server_tls.credentials())
    server.start()
    yield port, server_tls
    server.stop(0)


def test_pinning_reads_the_ca_from_grpcs_own_handshake(
    grpc_tls_port: tuple[int, tls.ServerTls],
) -> None:
    port, server_tls = grpc_tls_port
    pem = fetch_pinned_ca(f"127.0.0.1:{port}", server_tls.ca_fingerprint)
    assert x509.load_pem_x509_certificate(pem.encode()) == x509.load_pem_x509_certificate(
        server_tls.ca_pem
    )
    # What was pinned is enough for grpc's verified TLS, and nothing else is trusted.
    with grpc.secure_channel(
        f"127.0.0.1:{port}", grpc.ssl_channel_credentials(pem.encode())
    ) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ConfigError) as refused:
        fetch_pinned_ca(f"127.0.0.1:{port}", wrong)
    assert wrong in str(refused.value) and server_tls.ca_fingerprint in str(refused.value)
    # The right CA, but an address the certificate does not name: told which --tls-san to add.
    with pytest.raises(ConfigError, match=r"--tls-san 127\.0\.0\.2"):
        fetch_pinned_ca(f"127.0.0.2:{port}", server_tls.ca_fingerprint)


def test_pinning_a_plaintext_server_says_so() -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(ConfigError, match="no TLS at"):
            fetch_pinned_ca(f"127.0.0.1:{port}", "sha256:" + "0" * 64, timeout=5)
    finally:
        server.stop(0)


def test_a_client_key_without_its_certificate_opens_a_plain_tls_channel() -> None:
    # grpc's C core aborts the whole process on a key without a certificate: run it apart.
    code = (
        "from rmm_agent.transport import make_client_key, open_channel\n"
        "key, _ = make_client_key()\n"
        "open_channel('127.0.0.1:9', False, '', key, '').close()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
