"""The agent's one gRPC channel to its server, and what a failed call means.

Pinning the server's CA, which the `rmm` CLI does too, is rmm_common/pinning.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import socket
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio

from rmm_agent.state import Identity, StateDir
from rmm_common.pinning import TLS_REFUSALS, describe_connect_failure, split_server

log = logging.getLogger(__name__)
T = TypeVar("T")
# How to open the grpc.aio twin of each channel open_channel() returned (see StreamLink).
_AIO_TWINS: weakref.WeakKeyDictionary[grpc.Channel, Callable[[], grpc.aio.Channel]] = (
    weakref.WeakKeyDictionary()
)

CHANNEL_OPTIONS = (
    # Keepalive pings find a dead connection behind a NAT or a cut cable within about a minute.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 1_000),
    ("grpc.max_reconnect_backoff_ms", 60_000),
)


def make_client_key() -> tuple[bytes, str]:
    """Return a new P-256 key (PEM) and a certificate request (PEM) for it."""
    # Imported here: cryptography is the agent's dependency, not the `rmm` CLI's.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname() or "rmm")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def open_channel(
    server: str,
    insecure: bool,
    ca_cert_pem: str = "",
    client_key_pem: bytes = b"",
    client_cert_pem: str = "",
) -> grpc.Channel:
    """Open a channel to `server` (HOST:PORT): plaintext only when asked, else TLS.

    `ca_cert_pem`, when given, is the only CA trusted (else the system's); a client key and
    certificate make it mutual TLS.
    """
    if insecure:
        channel = grpc.insecure_channel(server, options=CHANNEL_OPTIONS)
    else:
        credentials = _credentials(ca_cert_pem, client_key_pem, client_cert_pem)
        channel = grpc.secure_channel(server, credentials, options=CHANNEL_OPTIONS)
    # Its grpc.aio twin (same address, same trust) for the streams: StreamLink.for_channel().
    _AIO_TWINS[channel] = functools.partial(
        open_aio_channel, server, insecure, ca_cert_pem, client_key_pem, client_cert_pem
    )
    return channel


def agent_address(identity: Identity) -> str:
    """Return where the agent makes its calls: the mutual-TLS port when it has one."""
    if not identity.mtls_port:
        return identity.server
    host, _ = split_server(identity.server)
    return f"[{host}]:{identity.mtls_port}" if ":" in host else f"{host}:{identity.mtls_port}"


def agent_channel(identity: Identity, state_dir: Path) -> grpc.Channel:
    """Open the enrolled agent's channel: its pinned CA, and its client certificate if any."""
    key = StateDir(state_dir).load_client_key() if identity.client_cert_pem else b""
    return open_channel(
        agent_address(identity),
        identity.insecure,
        identity.ca_cert_pem,
        key,
        identity.client_cert_pem,
    )


def is_tls_refusal(error: grpc.RpcError) -> bool:
    """Say whether a call failed because the server's certificate is not one we trust."""
    details = error.details() if hasattr(error, "details") else str(error)
    return any(marker in (details or "") for marker in TLS_REFUSALS)


def describe_rpc_error(error: grpc.RpcError, server: str, *, pinned: bool) -> str:
    """Say in one line what a failed call means for the person reading the log.

    `pinned`: whether a CA was pinned for this connection (else the system's CAs are trusted),
    which changes what a refused certificate means.
    """
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if is_tls_refusal(error):
        advice = describe_connect_failure(
            details or "",
            code=code.name if code is not None else "UNAVAILABLE",
            insecure=False,
            trusted="the CA this agent pinned at enrollment" if pinned else "",
            pin_flag="--ca-fingerprint sha256:<hex>",
            again="enroll again (rmm-agent enroll --force) and ",
        )
        return f"refused the server at {server}: {advice or details}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach the server at {server}: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the server at {server} did not answer in time"
    name = code.name if code is not None else "UNKNOWN"
    return f"the server at {server} refused the call ({name}): {details}"


# --- The streams' event loop ------------------------------------------------------------------
#
# grpc's synchronous API polls: every blocked call wakes every 0.1 s (MAXIMUM_WAIT_TIMEOUT in
# grpc/_common.py), each channel's spin thread every 0.2 s, and a connectivity subscription
# polls in a thread of its own. An idle agent spent more CPU on that than on collecting. The
# report stream and the command stream therefore run as coroutines on one asyncio loop over a
# grpc.aio channel, whose completion queue is waited on without a deadline: an idle agent sleeps
# until a report is made, a message arrives, or a keepalive is due.


def _credentials(ca_cert_pem: str, client_key_pem: bytes, client_cert_pem: str
                 ) -> grpc.ChannelCredentials:
    # Both or neither: grpc's C core aborts the process on a key without its certificate.
    mutual = bool(client_key_pem and client_cert_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=ca_cert_pem.encode() if ca_cert_pem else None,
        private_key=client_key_pem if mutual else None,
        certificate_chain=client_cert_pem.encode() if mutual else None,
    )


def open_aio_channel(
    server: str,
    insecure: bool,
    ca_cert_pem: str = "",
    client_key_pem: bytes = b"",
    client_cert_pem: str = "",
) -> grpc.aio.Channel:
    """Open a grpc.aio channel as open_channel() does (call it on the loop that will use it)."""
    if insecure:
        return grpc.aio.insecure_channel(server, options=CHANNEL_OPTIONS)
    credentials = _credentials(ca_cert_pem, client_key_pem, client_cert_pem)
    return grpc.aio.secure_channel(server, credentials, options=CHANNEL_OPTIONS)


class StreamLink:
    """One daemon thread running an asyncio loop, and the channel the agent's streams use on it.

    `channel` is a grpc.aio channel (the agent's own, see agent_link()), or an adapter over a
    synchronous grpc.Channel for callers that hand one in (the runner and the command stream
    still accept one; the adapter keeps grpc's polling, the aio channel has none).
    """

    def __init__(
        self,
        make_channel: Callable[[asyncio.AbstractEventLoop], Any],
        *,
        owns_channel: bool = True,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._owns_channel = owns_channel
        self._thread = threading.Thread(target=self._serve, name="grpc-loop", daemon=True)
        self._thread.start()
        self._closed = False

        async def make() -> Any:
            return make_channel(self.loop)

        # Made on the loop: a grpc.aio channel belongs to the loop it was made on.
        self.channel: Any = self.submit(make()).result()

    @classmethod
    def over(cls, channel: grpc.Channel) -> StreamLink:
        """Run the streams' coroutines over a synchronous channel (which the caller closes)."""
        return cls(lambda loop: SyncChannelAdapter(channel, loop), owns_channel=False)

    @classmethod
    def for_channel(cls, channel: grpc.Channel) -> StreamLink:
        """Run the streams over the grpc.aio twin of a channel open_channel() opened (the same
        address and trust), or over `channel` itself, through the adapter, when it has none."""
        twin = _AIO_TWINS.get(channel)
        if twin is None:
            return cls.over(channel)
        return cls(lambda _loop: twin())

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coro` on the loop; return a future to wait on from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Call `callback(*args)` on the loop, from any thread; nothing once the link closed."""
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody to wake
            self.loop.call_soon_threadsafe(callback, *args)

    def close(self) -> None:
        """End what still runs on the loop, close the channel (if it is the link's own) and end
        the loop's thread."""
        if self._closed:
            return
        try:
            self.submit(self._shutdown()).result(timeout=10)
        except Exception as exc:  # closing on the way out: say it, go on
            log.debug("closing the agent's streams: %s", exc)
        self._closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()

    async def _shutdown(self) -> None:
        # As asyncio.run() ends: a coroutine left waiting would be finalised on a closed loop.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=5)
        if self._owns_channel:
            await self.channel.close()
        await self.loop.shutdown_asyncgens()


async def stream_failure(call: Any) -> grpc.RpcError | None:
    """Return why a finished stream failed, as an RpcError, or None when it ended OK."""
    code = await call.code()
    if code == grpc.StatusCode.OK:
        return None
    details = await call.details()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


_END = object()


class _SyncStreamCall:
    """A synchronous stream-stream call seen through the grpc.aio call's methods."""

    def __init__(
        self,
        multicallable: Any,
        requests: AsyncIterator[Any],
        metadata: Any,
        timeout: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._loop = loop
        self._requests = requests
        self._pending: concurrent.futures.Future[Any] | None = None
        self._cancelled = False
        self._call = multicallable(self._pull(), metadata=metadata, timeout=timeout)

    def _pull(self) -> Iterator[Any]:
        # grpc's request thread takes each message from the coroutine-side generator.
        async def step() -> Any:
            return await self._requests.__anext__()

        while not self._cancelled:
            self._pending = asyncio.run_coroutine_threadsafe(step(), self._loop)
            try:
                yield self._pending.result()
            except (StopAsyncIteration, concurrent.futures.CancelledError, RuntimeError):
                return

    def __aiter__(self) -> _SyncStreamCall:
        return self

    async def __anext__(self) -> Any:
        item = await self._loop.run_in_executor(None, next, self._call, _END)
        if item is _END:
            raise StopAsyncIteration
        return item

    async def initial_metadata(self) -> Any:
        return await self._loop.run_in_executor(None, self._call.initial_metadata)

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await self._loop.run_in_executor(None, self._call.code)
        return code

    async def details(self) -> str:
        details: str = await self._loop.run_in_executor(None, self._call.details)
        return details

    def done(self) -> bool:
        return bool(self._call.done())

    def cancel(self) -> bool:
        self._cancelled = True
        pending = self._pending
        if pending is not None:
            pending.cancel()
        return bool(self._call.cancel())


class SyncChannelAdapter:
    """A synchronous grpc.Channel with the grpc.aio methods the agent's streams call."""

    def __init__(self, channel: grpc.Channel, loop: asyncio.AbstractEventLoop) -> None:
        self._channel = channel
        self._loop = loop

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        multicallable = self._channel.stream_stream(method, *args, **kwargs)

        def call(
            request_iterator: AsyncIterator[Any], metadata: Any = None, timeout: float | None = None
        ) -> _SyncStreamCall:
            return _SyncStreamCall(multicallable, request_iterator, metadata, timeout, self._loop)

        return call

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        multicallable = self._channel.unary_unary(method, *args, **kwargs)

        def call(request: Any, metadata: Any = None, timeout: float | None = None) -> Any:
            return self._loop.run_in_executor(
                None, functools.partial(multicallable, request, metadata=metadata, timeout=timeout)
            )

        return call

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._channel.unary_stream(method, *args, **kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._channel.stream_unary(method, *args, **kwargs)
