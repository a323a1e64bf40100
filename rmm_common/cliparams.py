"""Option checks shared by the three command lines (`rmm`, `rmm-agent`, `rmm-server`).

A wrong argument is the user's to fix, so it exits 2 with click's usage error, naming the flag
(and the environment variable it came from), when the command line is read: not later, deep in
a connection attempt, as a failure with exit 1. The one module of this package that imports
click, which every part with a command line has; the parsers themselves stay free of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click
from click.core import ParameterSource

from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument, RmmError
from rmm_common.net import split_host_port

T = TypeVar("T")

SERVER_EXAMPLE = "rmm.example.net:50051"


def host_port(value: str, flag: str, example: str = SERVER_EXAMPLE, lowest_port: int = 1) -> str:
    """Return `value` as HOST:PORT (stripped), or raise InvalidArgument saying how to write it."""
    text = value.strip()
    default_port = example.rpartition(":")[2]
    scheme, sep, rest = text.partition("://")
    if sep:
        # gRPC addresses take no scheme; people paste URLs (http://, https://, grpc://).
        bare = rest.split("/", 1)[0] or example
        bare = bare if ":" in bare else f"{bare}:{default_port}"
        raise InvalidArgument(
            f"{flag} {value!r}: give HOST:PORT without a scheme ({scheme}:// is not part of a "
            f"gRPC address), e.g. {bare}"
        )
    host, sep, port = text.rpartition(":")
    bare_v6 = bool(sep) and ":" in host and not host.startswith("[")  # "::1", "fe80::1"
    if not sep or bare_v6 or not port.isdigit() or not host:
        meant = (text if not sep or bare_v6 else host).strip("[]")
        name = f"[{meant}]" if ":" in meant else (meant or "rmm.example.net")
        what = "has no port" if not sep or bare_v6 else "is not HOST:PORT"
        raise InvalidArgument(
            f"{flag} {value!r} {what}: give HOST:PORT, e.g. {name}:{default_port}"
        )
    _, number = split_host_port(text, flag, example)
    if not lowest_port <= number < 65536:
        raise InvalidArgument(
            f"{flag} {value!r}: port {number} is not between {lowest_port} and 65535"
        )
    return text


def checked(
    parse: Callable[[str, str], T],
) -> Callable[[click.Context, click.Parameter, str | None], T | str | None]:
    """Make a click callback of `parse(value, flag)`: its RmmError becomes a usage error (exit 2).

    An empty value (the option's default "" or None) is passed through: whether the option is
    needed is the command's business.
    """

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> T | str | None:
        if value is None or value == "":
            return value
        flag = param.opts[0] if param.opts else str(param.name)
        if param.name and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT:
            envvar = param.envvar if isinstance(param.envvar, str) else None
            if envvar:
                flag = f"{envvar} (for {flag})"
        try:
            return parse(value, flag)
        except RmmError as exc:
            raise click.UsageError(str(exc), ctx) from None

    return callback


def server_address(value: str, flag: str) -> str:
    """Check the server's gRPC address a client dials (HOST:PORT, no scheme)."""
    return host_port(value, flag)


# What each server option's example says, so that the port suggested is that listener's.
LISTEN_EXAMPLES = {
    "--grpc-listen": "0.0.0.0:50051",
    "--http-listen": "0.0.0.0:9464",
    "--mtls-listen": "0.0.0.0:50052",
}


def listen_address(value: str, flag: str) -> str:
    """Check an address a server listens on (HOST:PORT, no scheme; port 0: any free one)."""
    example = LISTEN_EXAMPLES.get(flag.rsplit(maxsplit=1)[-1].strip("()"), "0.0.0.0:50051")
    return host_port(value, flag, example, lowest_port=0)


def duration_text(value: str, flag: str) -> str:
    """Check a duration (30s, 2m, 7d) and return it as given: the command parses it itself."""
    try:
        parse_duration(value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{flag}: {exc}") from None
    return value


# The databases the server runs on, by URL scheme (the part before "+driver").
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")


def database_url(value: str, flag: str) -> str:
    """Check a database URL's form; never echo it, as it may hold a password."""
    scheme, sep, _rest = value.strip().partition("://")
    if not sep:
        raise InvalidArgument(
            f"{flag} is not a URL: write postgresql://USER[:PASSWORD]@HOST[:PORT]/NAME (or leave "
            "it out for SQLite inside --data-dir)"
        )
    if scheme.split("+", 1)[0].lower() not in DATABASE_SCHEMES:
        raise InvalidArgument(
            f"{flag}: {scheme}:// is not a database this server runs on: write "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/NAME, or sqlite:///PATH (or leave it out "
            "for SQLite inside --data-dir)"
        )
    return value.strip()
