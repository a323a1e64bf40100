"""The HTTP listener: /metrics for Prometheus and /healthz for load balancers and humans."""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


class HttpApi:
    """Serve /metrics and /healthz from a thread, beside the asyncio gRPC server."""

    def __init__(
        self,
        host: str,
        port: int,
        render_metrics: Callable[[], bytes],
        healthy: Callable[[], tuple[bool, str]],
    ) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "rmm-server"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    api._serve_metrics(self)
                elif path == "/healthz":
                    ok, text = api.healthy()
                    self._send(200 if ok else 503, "text/plain; charset=utf-8", text.encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")

            def _send(self, status: int, content_type: str, body: bytes, **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http %s " + format, self.client_address[0], *args)

        self.render_metrics = render_metrics
        self.healthy = healthy
        self._handler = Handler
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        """Return the port actually bound (useful when 0 was asked)."""
        return int(self._httpd.server_address[1])

    def _serve_metrics(self, request: BaseHTTPRequestHandler) -> None:
        try:
            body = self.render_metrics()
        except Exception:
            log.exception("rendering /metrics failed")
            request._send(500, "text/plain", b"rendering metrics failed; see the server log\n")  # type: ignore[attr-defined]
            return
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            request._send(  # type: ignore[attr-defined]
                200, CONTENT_TYPE_METRICS, gzip.compress(body, 1), Content_Encoding="gzip"
            )
        else:
            request._send(200, CONTENT_TYPE_METRICS, body)  # type: ignore[attr-defined]

    def start(self) -> None:
        """Start serving in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
