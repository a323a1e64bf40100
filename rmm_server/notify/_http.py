"""One POST of JSON with a timeout, its failures turned into NotifyError."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from rmm_common.errors import InvalidArgument
from rmm_server.notify.model import NotifyError

# Answers that say "try later" although they are 4xx.
_RETRYABLE_4XX = {408, 425, 429}


async def post_json(
    client: httpx.AsyncClient,
    receiver: str,
    url: str,
    body: Any,
    timeout: float,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST `body` as JSON to `url`; raise NotifyError naming the receiver on any failure."""
    try:
        response = await client.post(url, json=body, headers=dict(headers or {}), timeout=timeout)
    except httpx.TimeoutException as exc:
        raise NotifyError(
            f"receiver {receiver!r}: {redact(url)} did not answer within {timeout:g}s"
        ) from exc
    except httpx.HTTPError as exc:
        raise NotifyError(f"receiver {receiver!r}: POST {redact(url)} failed: {exc}") from exc
    if response.is_success:
        return response
    code = response.status_code
    retryable = code >= 500 or code in _RETRYABLE_4XX
    raise NotifyError(
        f"receiver {receiver!r}: {redact(url)} answered HTTP {code}: {response.text[:200]!r}"
        + ("" if retryable else "; check the URL and credentials in the receiver's settings"),
        retryable=retryable,
    )


def redact(url: str) -> str:
    """Return `url` without its path and query, which often carry the webhook's secret."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{f':{parsed.port}' if parsed.port else ''}/…"


def check_url(value: str) -> str:
    """Return `value` if it is an http(s) URL; raise InvalidArgument otherwise."""
    try:
        parsed = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise InvalidArgument(f"url is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidArgument("url must start with http:// or https:// and name a host")
    return value
