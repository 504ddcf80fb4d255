"""Locks on cache entries, so two processes never write the same store or prepared stream at once.

A cache writer *waits* for the lock instead of failing: several runs started together on the same data
(seeds, methods) all need the same store, and the first one to get the lock ingests it while the others
wait, then find it written and load it. `fsutil.exclusive_lock` (a flock that dies with its process,
kill -9 included, so a stale `.lock` file never blocks) is tried until it is free or
`LIFELONGREC_LOCK_TIMEOUT` seconds (default 3600) have passed; then the error names the holder's pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError, LifelongrecError
from ..fsutil import exclusive_lock

logger = logging.getLogger("lifelongrec")

DEFAULT_TIMEOUT_S = 3600.0
_POLL_S = 0.1


def lock_timeout() -> float:
    raw = os.environ.get("LIFELONGREC_LOCK_TIMEOUT")
    if raw is None or raw.strip() == "":
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise ConfigError(f"LIFELONGREC_LOCK_TIMEOUT={raw!r}: expected a number of seconds >= 0")
    return value


@contextlib.contextmanager
def cache_lock(folder: Path, what: str = "cache entry", timeout: float | None = None) -> Iterator[Path]:
    """Hold `fsutil.exclusive_lock(folder)` for the block, waiting up to `timeout` seconds for it."""
    limit = lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + limit
    told = False
    while True:
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(exclusive_lock(folder, what=what))
        except LifelongrecError as e:
            if time.monotonic() >= deadline:
                raise LifelongrecError(
                    f"{e} (waited {limit:g} s; set LIFELONGREC_LOCK_TIMEOUT to wait longer)"
                ) from None
            if not told:
                logger.info(f"{e}: waiting for it")
                told = True
            time.sleep(_POLL_S)
            continue
        with stack:
            yield folder
        return


def path_lock_folder(target: Path) -> Path:
    """Where the lock of a folder outside the cache lives (a user's `--out`): in the cache, keyed by the
    folder's absolute path, so nothing is left next to the user's files."""
    from .sources import cache_root

    key = hashlib.sha256(str(target.expanduser().resolve()).encode()).hexdigest()[:16]
    return cache_root() / "locks" / key


def clean_own_temporaries(target: Path) -> None:
    """Remove what an interrupted `atomic_directory(target)` left next to `target` (its `.<name>.*.tmp`
    and `.<name>.old-<pid>` siblings) and nothing else. Call it only while holding target's lock."""
    import shutil

    parent = target.parent
    if not parent.is_dir():
        return
    for p in parent.glob(f".{target.name}.*"):
        if p.name.endswith(".tmp") or p.name.startswith(f".{target.name}.old-"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
