"""push_file: write a file the operator sent, checked and atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
import tempfile

from rmm_agent.actions.base import ActionContext, ActionFailed, action, succeeded
from rmm_common.command_summary import printable
from rmm_proto import commands_pb2

DEFAULT_MODE = 0o644


def check_path(path: str) -> str:
    """Return `path` if it is absolute and could be a file name."""
    if not path or "\0" in path:
        raise ActionFailed(f"path {printable(path)} is empty or contains NUL")
    if not os.path.isabs(path):
        raise ActionFailed(f"path {printable(path)} is not absolute; give the full path")
    return path


def write_atomically(path: str, data: bytes, mode: int, overwrite: bool) -> None:
    """Write `data` to `path` in one step: readers see the old file or the whole new one."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ActionFailed(
            f"directory {printable(directory)} does not exist; create it first (`rmm files "
            "push` creates no directories)"
        )
    try:
        existing: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise ActionFailed(f"cannot check {printable(path)}: {exc.strerror}") from exc
    if existing is not None:
        if stat.S_ISLNK(existing.st_mode):
            # Replacing the link would not write its target but swap the link for a file.
            raise ActionFailed(
                f"{printable(path)} is a symbolic link; push to the path it points to instead"
            )
        if not stat.S_ISREG(existing.st_mode):
            raise ActionFailed(f"{printable(path)} exists and is not a regular file; refused")
        if not overwrite:
            # The flag the operator types, not the proto field: the message reaches a person.
            raise ActionFailed(f"{printable(path)} exists; push with --overwrite to replace it")
    # The temporary file sits in the target's directory: os.replace is atomic only within
    # one file system.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".rmm")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if existing is not None and hasattr(os, "chown"):
            # The agent runs as root: a replaced file keeps its owner (a user's dotfile stays
            # theirs) instead of becoming root's.
            os.chown(tmp, existing.st_uid, existing.st_gid)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise ActionFailed(f"cannot write {printable(path)}: {exc.strerror or exc}") from exc
    if not sys.platform.startswith("win"):
        # The rename itself is durable only once the directory is synced.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@action
def run(request: commands_pb2.PushFile, context: ActionContext) -> commands_pb2.CommandResult:
    """Check the file's size and checksum, then write it."""
    path = check_path(request.path)
    limit = context.config.max_file_bytes
    if len(request.data) > limit:
        raise ActionFailed(
            f"push {printable(path)}: {len(request.data)} bytes is over this host's limit of "
            f"{limit} bytes (max_file_bytes in the agent configuration)"
        )
    digest = hashlib.sha256(request.data).hexdigest()
    if not request.sha256:
        raise ActionFailed(f"push {printable(path)}: no sha256 given; nothing written")
    if request.sha256.lower() != digest:
        raise ActionFailed(
            f"push {printable(path)}: the data's sha256 is {digest}, not {request.sha256} as "
            "sent; the data was damaged on the way; nothing written"
        )
    mode = request.mode & 0o7777 if request.mode else DEFAULT_MODE
    write_atomically(path, request.data, mode, request.overwrite)
    return succeeded(file=commands_pb2.FileResult(path=path, size=len(request.data), sha256=digest))
