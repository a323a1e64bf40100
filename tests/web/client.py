"""A small HTTP client for the dashboard tests: no redirects followed, cookies kept by hand, so
each test sees exactly the status, headers and cookie flags the server sent."""

from __future__ import annotations

import http.client
import re
import ssl
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def set_cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []

    def csrf(self) -> str:
        found = CSRF_FIELD.search(self.body)
        assert found is not None, f"no CSRF field in the page: {self.body[:500]}"
        return found.group(1)


@dataclass
class Browser:
    """One operator's cookies against one server (http:// or https:// base URL)."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)
    context: ssl.SSLContext | None = None

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        url = urlsplit(self.base)
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(url.netloc, timeout=30, context=self.context)
        else:
            conn = http.client.HTTPConnection(url.netloc, timeout=30)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            reply = Reply(response.status, response.headers, response.read().decode())
        finally:
            conn.close()
        for line in reply.set_cookies():
            jar: SimpleCookie = SimpleCookie()
            jar.load(line)
            for name, morsel in jar.items():
                if morsel.value and morsel["max-age"] != "0" and "1970" not in morsel["expires"]:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return reply

    def get(self, path: str, **kw: dict[str, str]) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict[str, str], **kw: dict[str, str]) -> Reply:
        return self.request("POST", path, form=form, **kw)

    def login(self, token: str, next_path: str = "/fleet") -> Reply:
        page = self.get("/login?" + urlencode({"next": next_path}))
        assert page.status == 200, page.body
        return self.post("/login", {"csrf": page.csrf(), "token": token, "next": next_path})
