"""Agent archives the server offers for self-update: index a directory, decide, stream.

The directory holds `rmm-agent-<version>.pyz` files. Each is hashed once when indexed; an agent is
offered the newest one when its own version is older and it says it can update itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from rmm_common.errors import ConfigError, NotFound
from rmm_proto import agent_pb2

log = logging.getLogger(__name__)

ARCHIVE_PREFIX = "rmm-agent-"
ARCHIVE_SUFFIX = ".pyz"
CHUNK_BYTES = 256 * 1024

# The PEP 440 forms release tooling produces: 1.2.3, 1.2.3rc1, 1.2.3.post1, 1.2.3.dev4 (no epochs
# or local versions). The server extra does not carry `packaging` for one comparison.
_VERSION_RE = re.compile(
    r"^(?P<release>\d+(?:\.\d+)*)"
    r"(?:(?P<pre>a|b|rc)(?P<pre_n>\d+))?"
    r"(?:\.post(?P<post>\d+))?"
    r"(?:\.dev(?P<dev>\d+))?$"
)
_PRE_PHASE = {"a": 0, "b": 1, "rc": 2}

VersionKey = tuple[tuple[int, ...], tuple[int, int], int, tuple[int, int]]


def version_key(version: str) -> VersionKey:
    """Return a sort key that orders `version` as PEP 440 does, or raise ValueError."""
    match = _VERSION_RE.match(version.strip())
    if match is None:
        raise ValueError(f"{version!r} is not a version like 1.2.3, 1.2.3rc1 or 1.2.3.post1")
    release = tuple(int(part) for part in match["release"].split("."))
    while len(release) > 1 and release[-1] == 0:  # 1.0 == 1.0.0
        release = release[:-1]
    if match["pre"]:
        pre = (_PRE_PHASE[match["pre"]], int(match["pre_n"]))
    elif match["dev"] is not None and match["post"] is None:
        pre = (-1, 0)  # 1.0.dev1 comes before 1.0a1
    else:
        pre = (3, 0)  # a final release
    post = -1 if match["post"] is None else int(match["post"])
    dev = (1, 0) if match["dev"] is None else (0, int(match["dev"]))
    return release, pre, post, dev


def is_older(version: str, than: str) -> bool:
    """Say whether `version` sorts before `than`; an unparsable `version` counts as older."""
    try:
        return version_key(version) < version_key(than)
    except ValueError:
        return True


@dataclass(frozen=True, slots=True)
class AgentArchive:
    """One indexed archive."""

    version: str
    path: Path
    sha256: str
    size: int
    mtime_ns: int

    def offer(self) -> agent_pb2.UpdateOffer:
        """Return the offer message for this archive."""
        return agent_pb2.UpdateOffer(version=self.version, sha256=self.sha256, size=self.size)


def hash_file(path: Path) -> tuple[str, int]:
    """Return (sha256 hex digest, size) of the file at `path`."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def scan_archives(directory: Path) -> dict[str, AgentArchive]:
    """Index every `rmm-agent-<version>.pyz` in `directory`; raise ConfigError on a bad name."""
    if not directory.is_dir():
        raise ConfigError(
            f"--agent-updates {directory} is not a directory: create it and put "
            f"{ARCHIVE_PREFIX}<version>{ARCHIVE_SUFFIX} archives in it"
        )
    archives: dict[str, AgentArchive] = {}
    errors: list[str] = []
    for path in sorted(directory.iterdir()):
        name = path.name
        if not (name.startswith(ARCHIVE_PREFIX) and name.endswith(ARCHIVE_SUFFIX)):
            continue
        version = name[len(ARCHIVE_PREFIX) : -len(ARCHIVE_SUFFIX)]
        try:
            version_key(version)
        except ValueError as exc:
            errors.append(f"{path}: {exc}; rename it {ARCHIVE_PREFIX}<version>{ARCHIVE_SUFFIX}")
            continue
        try:
            stat = path.stat()
            sha256, size = hash_file(path)
        except OSError as exc:
            errors.append(f"{path}: cannot read it: {exc.strerror}")
            continue
        archives[version] = AgentArchive(version, path, sha256, size, stat.st_mtime_ns)
    if errors:
        raise ConfigError("agent archives refused:\n" + "\n".join(errors))
    return archives


class UpdateIndex:
    """The archives of one directory and which one to offer."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.archives: dict[str, AgentArchive] = {}
        self.newest: AgentArchive | None = None

    def scan(self) -> None:
        """Index the directory again; on an error the previous index stays in force."""
        archives = scan_archives(self.directory)
        self.archives = archives
        self.newest = (
            max(archives.values(), key=lambda a: version_key(a.version)) if archives else None
        )
        if self.newest is None:
            log.warning(
                "no %s<version>%s archives in %s: no agent updates are offered",
                ARCHIVE_PREFIX,
                ARCHIVE_SUFFIX,
                self.directory,
            )
        else:
            log.info(
                "offering agent %s (%d bytes, sha256 %s) to older self-updating agents; %d "
                "archives in %s",
                self.newest.version,
                self.newest.size,
                self.newest.sha256[:12],
                len(archives),
                self.directory,
            )

    def offer_for(self, report: agent_pb2.Report) -> agent_pb2.UpdateOffer | None:
        """Return the offer for the agent that sent `report`, or None."""
        newest = self.newest
        if newest is None or not report.self_updatable:
            return None
        if not is_older(report.agent_version, newest.version):
            return None
        return newest.offer()

    def get(self, version: str) -> AgentArchive:
        """Return the archive of `version`, or raise NotFound."""
        archive = self.archives.get(version)
        if archive is None:
            offered = ", ".join(sorted(self.archives, key=version_key)) or "none"
            raise NotFound(f"no agent archive of version {version!r} here (offered: {offered})")
        return archive

    def chunks(
        self, archive: AgentArchive, chunk_bytes: int = CHUNK_BYTES
    ) -> Generator[bytes, None, None]:
        """Yield the archive's bytes; raise ConfigError when it changed since it was indexed."""
        with archive.path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size != archive.size or stat.st_mtime_ns != archive.mtime_ns:
                raise ConfigError(
                    f"{archive.path} changed since the server indexed it: send the server SIGHUP "
                    "to index the agent archives again"
                )
            while block := handle.read(chunk_bytes):
                yield block
