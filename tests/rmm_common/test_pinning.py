"""describe_connect_failure(): TLS advice only for connections that failed, never for answers."""

from __future__ import annotations

import pytest

from rmm_common.pinning import describe_connect_failure

FLAG = "--ca-fingerprint sha256:<hex>"


@pytest.mark.parametrize(
    "code",
    ["RESOURCE_EXHAUSTED", "UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT", "INTERNAL"],
)
@pytest.mark.parametrize("insecure", [True, False])
def test_an_answer_from_the_server_is_not_a_tls_problem(code: str, insecure: bool) -> None:
    # The server answered over a working connection (a rate limit, a refused token): whatever
    # its details say, the connection and its TLS were fine.
    details = "too many enrollments from 127.0.0.1; CERTIFICATE_VERIFY_FAILED WRONG_VERSION_NUMBER"
    assert (
        describe_connect_failure(details, code=code, insecure=insecure, trusted="", pin_flag=FLAG)
        is None
    )


def test_plaintext_to_a_tls_server_is_explained() -> None:
    advice = describe_connect_failure(
        "Socket closed", code="UNAVAILABLE", insecure=True, trusted="", pin_flag=FLAG
    )
    assert advice is not None and "drop --insecure" in advice and FLAG in advice


def test_tls_to_a_plaintext_server_is_explained() -> None:
    advice = describe_connect_failure(
        "SSL routines::WRONG_VERSION_NUMBER",
        code="UNAVAILABLE",
        insecure=False,
        trusted="",
        pin_flag=FLAG,
    )
    assert advice is not None and "does not speak TLS" in advice


def test_a_refused_connection_is_left_to_the_caller() -> None:
    assert (
        describe_connect_failure(
            "failed to connect: Connection refused",
            code="UNAVAILABLE",
            insecure=True,
            trusted="",
            pin_flag=FLAG,
        )
        is None
    )
