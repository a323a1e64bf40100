"""The one-line installers `rmm tokens create --installer` prints."""

from __future__ import annotations

import base64
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from rmm_common.errors import InvalidArgument
from rmm_common.oneliner import (
    DEFAULT_PACKAGE,
    Enrollment,
    ca_fingerprint,
    installer_command,
)
from tests.e2e.test_tls import make_ca_and_server_cert
from tests.helpers import ServerProcess, rmm, rmm_json

TOKEN = "rmme_abc'def"  # a quote, to prove the quoting holds


def bash_syntax_ok(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("platform", ["linux", "macos"])
def test_unix_command_is_one_valid_shell_line(platform: str) -> None:
    command = installer_command(Enrollment("rmm.example.net:50051", TOKEN), platform)
    assert "\n" not in command
    result = bash_syntax_ok(command)
    assert result.returncode == 0, result.stderr
    words = shlex.split(command)
    assert TOKEN in words and "rmm.example.net:50051" in words
    assert DEFAULT_PACKAGE in words and DEFAULT_PACKAGE.startswith("msp-rmm[agent]==")
    assert "install-service" in words and "--insecure" not in words
    assert words[words.index("--token") + 1] == TOKEN
    assert words[words.index("--server") - 1] == "enroll"


def test_linux_command_with_ca_pins_it(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing")
    ca, _, _ = make_ca_and_server_cert(tmp_path, "pin")
    pem = ca.read_text()
    command = installer_command(Enrollment("h:1", "rmme_x", ca_pem=pem), "linux")
    assert bash_syntax_ok(command).returncode == 0
    encoded = re.search(r"echo (\S+) \| base64 -d > /var/lib/rmm-agent/ca.pem", command)
    assert encoded is not None and base64.b64decode(encoded.group(1)).decode() == pem
    assert "--ca-cert /var/lib/rmm-agent/ca.pem" in command
    openssl = subprocess.run(
        ["openssl", "x509", "-in", str(ca), "-noout", "-fingerprint", "-sha256"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert openssl.stdout.strip().split("=", 1)[1] == ca_fingerprint(pem)


def test_windows_command_is_powershell_with_every_piece() -> None:
    command = installer_command(
        Enrollment("rmm.example.net:50051", TOKEN, package="msp-rmm[agent]==0.1.0", insecure=True),
        "windows",
    )
    assert "\n" not in command
    assert command.startswith("$ErrorActionPreference = 'Stop'; ")
    assert "'rmme_abc''def'" in command  # PowerShell doubles a quote inside '...'
    assert "'rmm.example.net:50051'" in command
    assert "'msp-rmm[agent]==0.1.0'" in command and "pywin32" in command
    assert "& $agent 'enroll'" in command and "'--insecure'" in command
    assert "& $agent install-service --state-dir $state" in command
    assert command.count("if ($LASTEXITCODE)") == 5
    # Balanced quotes and braces: nothing left open for PowerShell's parser.
    assert command.replace("''", "").count("'") % 2 == 0
    assert command.count("{") == command.count("}")


def test_missing_pieces_are_named() -> None:
    with pytest.raises(InvalidArgument, match="RMM_SERVER"):
        installer_command(Enrollment("", "t"), "linux")
    with pytest.raises(InvalidArgument, match="no PEM certificate"):
        installer_command(Enrollment("h:1", "t", ca_pem="junk"), "linux")
    with pytest.raises(InvalidArgument, match="choose one of linux, windows, macos"):
        installer_command(Enrollment("h:1", "t"), "plan9")


@pytest.mark.linux
def test_rmm_tokens_create_prints_the_installer(server: ServerProcess) -> None:
    result = rmm(
        server, "tokens", "create", "--client", "acme", "--site", "hq", "--installer", "linux",
        "--package-url", "https://pkgs.example.net/msp_rmm-0.1.0-py3-none-any.whl",
    )  # fmt: skip
    token, command = result.stdout.strip().split("\n")
    assert token.startswith("rmme_")
    assert bash_syntax_ok(command).returncode == 0
    words = shlex.split(command)
    assert token in words and server.grpc_address in words
    assert "--insecure" in words  # the CLI talks plaintext, so will the agent
    assert "https://pkgs.example.net/msp_rmm-0.1.0-py3-none-any.whl" in words
    assert "root shell" in result.stderr
    data = rmm_json(server, "tokens", "create", "--client", "a", "--site", "s", "--installer",
                    "windows")  # fmt: skip
    assert data["token"] in data["installer"].replace("''", "'")


def test_plaintext_beyond_loopback_reaches_the_agent_only_when_allowed() -> None:
    for platform in ("linux", "windows", "macos"):
        plain = installer_command(Enrollment("10.0.0.5:50051", TOKEN, insecure=True), platform)
        allowed = installer_command(
            Enrollment("10.0.0.5:50051", TOKEN, insecure=True, allow_plaintext=True), platform
        )
        assert "--allow-plaintext-beyond-loopback" not in plain, platform
        assert "--allow-plaintext-beyond-loopback" in allowed, platform
