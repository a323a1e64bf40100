"""pull_file: send a regular file back to the operator, bounded in size."""

from __future__ import annotations

import hashlib
import os
import stat

from rmm_agent.actions.base import ActionContext, ActionFailed, action, succeeded
from rmm_agent.actions.push_file import check_path
from rmm_common.command_summary import printable
from rmm_proto import commands_pb2


def read_bounded(path: str, limit: int) -> bytes:
    """Return the contents of the regular file `path`, refusing one over `limit` bytes."""
    # O_NONBLOCK: opening a named pipe must not wait for a writer (it is refused just after).
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ActionFailed(f"no file {printable(path)}") from None
    except OSError as exc:
        raise ActionFailed(f"cannot read {printable(path)}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ActionFailed(f"{printable(path)} is {kind}; only regular files are pulled")
        if info.st_size > limit:
            raise ActionFailed(
                f"{printable(path)} is {info.st_size} bytes, over the limit of {limit} bytes"
            )
        # Up to one byte more than allowed: a file that grew since fstat is caught too.
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ActionFailed(f"cannot read {printable(path)}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if size > limit:
        raise ActionFailed(
            f"{printable(path)} grew to over the limit of {limit} bytes while it was read"
        )
    return b"".join(chunks)


@action
def run(request: commands_pb2.PullFile, context: ActionContext) -> commands_pb2.CommandResult:
    """Read the file and return it with its checksum."""
    path = check_path(request.path)
    limit = context.config.max_file_bytes
    if request.max_bytes:
        limit = min(limit, request.max_bytes)
    data = read_bounded(path, limit)
    return succeeded(
        file=commands_pb2.FileResult(
            path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), data=data
        )
    )
