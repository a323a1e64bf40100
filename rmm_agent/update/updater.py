"""The running agent's side of self-update: take an offer, download, verify, hand over, confirm."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from rmm_agent.transport import describe_rpc_error
from rmm_agent.update.launcher import (
    Layout,
    read_json,
    read_rejected,
    under_launcher,
    write_json,
)
from rmm_common.errors import RmmError
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

UPDATE_COLLECTOR = "update"  # the name under which reports carry the update state
RETRY_AFTER_SECONDS = 600.0
DOWNLOAD_TIMEOUT_SECONDS = 600.0
# A version is used in file names: the server's PEP 440 forms only.
_SAFE_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+_-]{0,63}$")

# version -> the archive's bytes in order
Fetch = Callable[[str], Iterable[bytes]]


class UpdateError(RmmError):
    """An offered update cannot be downloaded or is not what was offered."""


def save_verified(chunks: Iterable[bytes], size: int, sha256: str, dest: Path) -> Path:
    """Write `chunks` to `dest` only if they are exactly `size` bytes hashing to `sha256`.

    The bytes go to `dest.part` first; on any failure nothing is left behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    written = 0
    try:
        with part.open("wb") as handle:
            for block in chunks:
                written += len(block)
                if written > size:
                    raise UpdateError(
                        f"{dest.name}: the server sent more than the {size} bytes it offered; "
                        "the archive on the server changed: it must be re-indexed (SIGHUP)"
                    )
                digest.update(block)
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
        if written != size:
            raise UpdateError(
                f"{dest.name}: got {written} of the {size} bytes offered (download cut short)"
            )
        if digest.hexdigest() != sha256:
            raise UpdateError(
                f"{dest.name}: sha256 is {digest.hexdigest()}, the server offered {sha256}; "
                "refused (damaged in transit or replaced on the server)"
            )
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest


def grpc_fetch(channel: grpc.Channel, credential: str, server: str, *, pinned: bool) -> Fetch:
    """Return a Fetch that streams an archive with the DownloadUpdate call.

    `pinned`: whether the agent pinned a CA at enrollment (see describe_rpc_error).
    """
    stub = agent_pb2_grpc.AgentServiceStub(channel)

    def fetch(version: str) -> Iterator[bytes]:
        try:
            for chunk in stub.DownloadUpdate(
                agent_pb2.DownloadUpdateRequest(version=version),
                metadata=bearer_metadata(credential),
                timeout=DOWNLOAD_TIMEOUT_SECONDS,
            ):
                yield chunk.data
        except grpc.RpcError as error:
            raise UpdateError(
                f"downloading agent {version}: {describe_rpc_error(error, server, pinned=pinned)}"
            ) from error

    return fetch


def _start_thread(target: Callable[[], None]) -> None:
    threading.Thread(target=target, name="update-download", daemon=True).start()


class Updater:
    """Take update offers from acknowledgements; confirm this version once the server acks."""

    def __init__(
        self,
        layout: Layout,
        version: str,
        fetch: Fetch,
        on_ready: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        start_thread: Callable[[Callable[[], None]], None] = _start_thread,
        retry_after: float = RETRY_AFTER_SECONDS,
    ) -> None:
        self.layout = layout
        self.version = version
        self.fetch = fetch
        self.on_ready = on_ready
        self.clock = clock
        self.wall_clock = wall_clock
        self.start_thread = start_thread
        self.retry_after = retry_after
        self.rejected = set(read_rejected(layout))
        self.confirmed = False
        self._lock = threading.Lock()
        self._busy = False
        self._ready = False
        self._retry_at: dict[str, float] = {}
        self._said_no: set[str] = set()

    def info(self) -> dict[str, Any]:
        """Return what reports say about updates (read by `rmm agents show`)."""
        return {
            "self_updatable": True,
            "version": self.version,
            "last": read_json(self.layout.status),
            "rejected": read_rejected(self.layout),
        }

    def decorate(self, report: agent_pb2.Report) -> None:
        """Mark `report` as from a self-updating agent and add the update state to it."""
        report.self_updatable = True
        report.collectors.append(
            agent_pb2.CollectorResult(
                name=UPDATE_COLLECTOR,
                ok=True,
                info_json=json.dumps(self.info(), sort_keys=True).encode(),
            )
        )

    def on_ack(self, ack: agent_pb2.ReportAck) -> None:
        """Confirm this version on the first good acknowledgement; consider an offer."""
        if not self.confirmed and not ack.rejected:
            self._confirm()
        if ack.HasField("update"):
            self.consider(ack.update)

    def _confirm(self) -> None:
        path = self.layout.confirmation(self.version)
        try:
            self.layout.root.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{self.wall_clock()}\n", encoding="utf-8")
        except OSError as exc:
            log.error("cannot write %s, the launcher will roll this version back: %s", path, exc)
            return
        self.confirmed = True
        log.info("the server acknowledged agent %s: confirmed in %s", self.version, path)

    def consider(self, offer: agent_pb2.UpdateOffer) -> None:
        """Start downloading `offer` unless it is this version, refused, or under way."""
        version = offer.version
        if version == self.version:
            return
        if not _SAFE_VERSION.match(version) or not re.fullmatch(r"[0-9a-f]{64}", offer.sha256):
            self._say_no_once(version, "the offer is malformed (version or sha256)")
            return
        if version in self.rejected:
            self._say_no_once(version, "it was rolled back on this host before")
            return
        with self._lock:
            if self._busy or self._ready or self.clock() < self._retry_at.get(version, 0.0):
                return
            self._busy = True
        log.info("the server offers agent %s (this is %s): downloading", version, self.version)
        self.start_thread(lambda: self._download(offer))

    def _say_no_once(self, version: str, why: str) -> None:
        if version not in self._said_no:
            self._said_no.add(version)
            log.warning("not updating to agent %s offered by the server: %s", version, why)

    def _download(self, offer: agent_pb2.UpdateOffer) -> None:
        version = offer.version
        try:
            self._clear_incoming()
            path = save_verified(
                self.fetch(version),
                offer.size,
                offer.sha256,
                self.layout.incoming_archive(version),
            )
            write_json(
                self.layout.update_request,
                {
                    "from": self.version,
                    "to": version,
                    "sha256": offer.sha256,
                    "size": offer.size,
                    "requested_at": self.wall_clock(),
                },
            )
        except (UpdateError, OSError) as exc:
            log.error("agent %s not installed, retrying in %gs: %s", version, self.retry_after, exc)
            with self._lock:
                self._retry_at[version] = self.clock() + self.retry_after
                self._busy = False
            return
        with self._lock:
            self._busy = False
            self._ready = True
        log.info("agent %s downloaded and verified (%s); restarting into it", version, path)
        self.on_ready()

    def _clear_incoming(self) -> None:
        if not self.layout.incoming.is_dir():
            return
        for leftover in self.layout.incoming.iterdir():
            leftover.unlink(missing_ok=True)


def updater_from_env(
    state_dir: Path,
    version: str,
    fetch: Fetch,
    on_ready: Callable[[], None],
    environ: Mapping[str, str] = os.environ,
) -> Updater | None:
    """Return an Updater when this agent runs under the launcher, else None."""
    if not under_launcher(environ):
        return None
    return Updater(Layout.of(state_dir), version, fetch, on_ready)
