"""Atomic file writes: readers (a sensor, another process) never see half a file."""

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_target(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` when the block succeeds.

    The temporary name is unique per call, so concurrent writers of one target (threads or
    processes) never touch each other's file: the last `os.replace` wins, whole. The writer
    creates the file, so it gets the usual permissions (the umask's), as a direct write would.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(target: Path, text: str) -> None:
    """Replace `target` with `text` in one step (`atomic_target`)."""
    with atomic_target(target) as tmp:
        tmp.write_text(text)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
