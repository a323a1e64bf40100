"""The one command an operator pastes on a new host: install the agent, enroll, run as a service.

Stdlib only: the `rmm` command line makes it; the agent it installs never reads it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from dataclasses import dataclass

from rmm_common import __version__
from rmm_common.errors import InvalidArgument
from rmm_common.net import PLAINTEXT_BEYOND_LOOPBACK_FLAG

# The project's name on the package index: "rmm" there is an unrelated project (a placeholder
# that does not install), so the distribution is msp-rmm while the import packages stay rmm_*.
DISTRIBUTION = "msp-rmm"
# The agent of the same release as this CLI, not whatever is newest on the index: the
# installer's command is made for the server this CLI was released with.
DEFAULT_PACKAGE = f"{DISTRIBUTION}[agent]=={__version__}"
INSTALLER_PLATFORMS = ("linux", "windows", "macos")
# Where each platform's installer puts the agent's virtual environment and its state.
UNIX_LAYOUT = {
    "linux": ("/opt/rmm-agent", "/var/lib/rmm-agent"),
    "macos": ("/usr/local/rmm-agent", "/Library/Application Support/rmm-agent"),
}


_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


@dataclass(frozen=True)
class Enrollment:
    """What a new host needs to join: server, token, and how to trust the server."""

    server: str
    token: str
    package: str = DEFAULT_PACKAGE
    ca_pem: str = ""
    insecure: bool = False
    # With insecure: the operator allowed plaintext beyond loopback, so the agent is told so too.
    allow_plaintext: bool = False
    # "sha256:<hex>" of the server's CA: the agent pins it from the server's own chain, so no
    # file travels in the command. Preferred over ca_pem when the server gives one.
    ca_fingerprint: str = ""

    def check(self) -> None:
        """Raise InvalidArgument naming what is missing."""
        if not self.server:
            raise InvalidArgument(
                "the installer needs the server's address: pass --server HOST:PORT or set "
                "RMM_SERVER"
            )
        if not self.token:
            raise InvalidArgument("the installer needs an enrollment token")
        if not self.package.strip():
            raise InvalidArgument("--package-url must name a pip requirement or URL")
        if self.ca_pem:
            ca_fingerprint(self.ca_pem)  # refuses a file that is no certificate


def ca_fingerprint(ca_pem: str) -> str:
    """Return the SHA-256 fingerprint of the first certificate in `ca_pem` (AA:BB:...)."""
    match = _PEM_CERT.search(ca_pem)
    if match is None:
        raise InvalidArgument("the CA file holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        der = base64.b64decode("".join(match.group(1).split()), validate=True)
    except ValueError:
        raise InvalidArgument("the CA file's certificate is not valid base64") from None
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def unix_command(enrollment: Enrollment, platform: str = "linux") -> str:
    """Return one POSIX shell line (run as root) for Linux or macOS."""
    enrollment.check()
    venv, state = UNIX_LAYOUT[platform]
    agent = f"{venv}/bin/rmm-agent"
    q = shlex.quote
    steps = [
        f"python3 -m venv {q(venv)}",
        f"{q(venv + '/bin/python')} -m pip install --quiet --upgrade {q(enrollment.package)}",
        f"install -d -m 700 {q(state)}",
    ]
    enroll = [
        agent, "enroll", "--server", enrollment.server, "--token", enrollment.token,
        "--state-dir", state,
    ]  # fmt: skip
    if enrollment.ca_fingerprint:
        enroll += ["--ca-fingerprint", enrollment.ca_fingerprint]
    elif enrollment.ca_pem:
        ca_path = f"{state}/ca.pem"
        encoded = base64.b64encode(enrollment.ca_pem.encode()).decode()
        # Base64 keeps the PEM's lines inside one shell line; the file pins the server's CA.
        steps.append(f"echo {encoded} | base64 -d > {q(ca_path)}")
        enroll += ["--ca-cert", ca_path]
    if enrollment.insecure:
        enroll.append("--insecure")
        if enrollment.allow_plaintext:
            enroll.append(PLAINTEXT_BEYOND_LOOPBACK_FLAG)
    steps.append(shlex.join(enroll))
    steps.append(shlex.join([agent, "install-service", "--state-dir", state]))
    return " && ".join(steps)


def _ps(value: str) -> str:
    """Quote `value` as a PowerShell single-quoted string."""
    return "'" + value.replace("'", "''") + "'"


def windows_command(enrollment: Enrollment) -> str:
    """Return one PowerShell line (run as Administrator) for Windows."""
    enrollment.check()

    def native(command: str, what: str) -> str:
        # Native programs do not stop a script on failure: check each exit code.
        return f"{command}; if ($LASTEXITCODE) {{ throw {_ps(what + ' failed')} }}"

    enroll_args = [
        "enroll", "--server", enrollment.server, "--token", enrollment.token,
        "--state-dir", "$state",
    ]  # fmt: skip
    steps = [
        "$ErrorActionPreference = 'Stop'",
        "$venv = Join-Path $env:ProgramFiles 'rmm-agent'",
        "$state = Join-Path $env:ProgramData 'rmm-agent'",
        "$py = Join-Path $venv 'Scripts\\python.exe'",
        "$agent = Join-Path $venv 'Scripts\\rmm-agent.exe'",
        native("py -3 -m venv $venv", "creating the virtual environment"),
        native(
            f"& $py -m pip install --quiet --upgrade {_ps(enrollment.package)} 'pywin32>=308'",
            "installing the agent",
        ),
        # pywin32's service host needs its DLLs registered system-wide once.
        native("& $py -m pywin32_postinstall -install -quiet", "registering pywin32"),
        "New-Item -ItemType Directory -Force -Path $state | Out-Null",
    ]
    if enrollment.ca_fingerprint:
        enroll_args += ["--ca-fingerprint", enrollment.ca_fingerprint]
    elif enrollment.ca_pem:
        encoded = base64.b64encode(enrollment.ca_pem.encode()).decode()
        steps.append("$ca = Join-Path $state 'ca.pem'")
        steps.append(f"[IO.File]::WriteAllBytes($ca, [Convert]::FromBase64String({_ps(encoded)}))")
        enroll_args += ["--ca-cert", "$ca"]
    if enrollment.insecure:
        enroll_args.append("--insecure")
        if enrollment.allow_plaintext:
            enroll_args.append(PLAINTEXT_BEYOND_LOOPBACK_FLAG)
    rendered = " ".join(a if a.startswith("$") else _ps(a) for a in enroll_args)
    steps.append(native(f"& $agent {rendered}", "enrolling"))
    steps.append(native("& $agent install-service --state-dir $state", "installing the service"))
    return "; ".join(steps)


def installer_command(enrollment: Enrollment, platform: str) -> str:
    """Return the one-line installer for `platform` (linux, windows or macos)."""
    if platform == "windows":
        return windows_command(enrollment)
    if platform in UNIX_LAYOUT:
        return unix_command(enrollment, platform)
    raise InvalidArgument(
        f"no installer for {platform!r}: choose one of {', '.join(INSTALLER_PLATFORMS)}"
    )
