"""Atomic writes and hashing.

A crash (or kill -9) must never leave a half-written artifact that looks complete, so every writer
goes through a temporary sibling that is renamed into place only once it is whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes files private (0600)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, _FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `target` only if the block finishes.

    An existing `target` is swapped out and removed after the new one is in place, so readers see
    either the old complete directory or the new complete one, never a mix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(folder: str | Path, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive, non-blocking lock on `folder` (a `.lock` file inside it, flock'ed) for the
    block. A second process gets a LifelongrecError naming the holder's pid instead of mixing its
    writes with the first one's. The lock dies with its process (kill -9 included), so a stale
    `.lock` file never blocks anybody."""
    import fcntl

    from .errors import LifelongrecError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise LifelongrecError(
                f"{folder}: this {what} is in use by another lifelongrec process (pid {holder}); wait for it "
                "to finish or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove what an interrupted atomic write left behind in `folder` (recursively): `.<name>.*.tmp`
    files and directories and `.<name>.old-<pid>` directories. Call it only while holding the folder's
    lock, so no live writer's temporary is touched."""
    removed = []
    for p in Path(folder).rglob(".*"):
        name = p.name
        if (name.endswith(".tmp") or ".old-" in name) and p.exists():
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


def read_json(path: str | Path, what: str) -> dict:
    """A JSON object from `path`, or a one-line LifelongrecError naming the file and saying what it should
    be (`what`), for a missing file, bytes that are not UTF-8 JSON, or JSON that is not an object."""
    from .errors import LifelongrecError

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LifelongrecError(f"{path}: missing (expected {what})") from None
    except IsADirectoryError:
        raise LifelongrecError(f"{path}: is a folder (expected {what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LifelongrecError(f"{path}: not valid JSON ({e}); expected {what}") from None
    if not isinstance(data, dict):
        raise LifelongrecError(f"{path}: expected a JSON object ({what})")
    return data
