"""The one data pipeline: config -> store (ingested once, cached) -> stream (prepared, cached)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..config import SourceConfig, StreamConfig
from ..fsutil import clean_stale_temporaries, read_json
from .blocks import read_blocks
from .build import build_stream, filter_columns
from .locks import cache_lock, clean_own_temporaries, path_lock_folder
from .sources import cache_root, fetch
from .store import ensure_store, load_store
from .stream import Stream, load_stream, save_stream, stream_key


def _verify_source(source: SourceConfig) -> None:
    """A prepared stream's manifest claims the pinned hashes of a known dataset's files (through its
    store's meta): hash the files again in this process before writing one, whatever the stamp says."""
    if source.dataset is not None:
        fetch(source.dataset, quiet=True, verify=True)


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    """Hold the lock for writing the prepared stream `out` (waiting for another writer to finish).

    In the cache, the lock is the `prepared` folder's, so every writer there holds it and the stale
    temporaries of killed writers can be removed (fsutil.clean_stale_temporaries). Elsewhere (`--out`),
    a lock in the cache keyed by the folder's path, and only this folder's own temporaries are removed:
    the user's parent folder may hold other programs' files."""
    prepared = cache_root() / "prepared"
    if out.parent.resolve() == prepared.resolve():
        with cache_lock(prepared, what="prepared-stream cache"):
            clean_stale_temporaries(prepared)
            yield
    else:
        with cache_lock(path_lock_folder(out), what=f"output folder {out}"):
            clean_own_temporaries(out)
            yield


def _build(cfg: StreamConfig, store_dir: Path, out: Path) -> Stream:
    """Build the stream of `cfg` from the store at `store_dir` and write it to `out` (the caller holds
    the writer's lock). The store is read a block of users at a time (data/blocks.py) and the input
    sequences go to a scratch file beside `out`, so memory does not grow with the number of events;
    the stream returned is the one written, read back (its sequences memory-mapped)."""
    values = filter_columns(cfg)
    header = load_store(store_dir, values=values, timestamps=False, events=False)
    _verify_source(cfg.source)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.build.", suffix=".tmp"))
    try:
        stream = build_stream(cfg, header, read_blocks(store_dir, header, values), scratch / "seq_items.npy")
        save_stream(stream, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return load_stream(out)


def _store_dir(source: SourceConfig, memory_limit: str | None = None) -> tuple[Path, str]:
    store_dir = ensure_store(source, cache_root(), memory_limit)
    return store_dir, read_json(store_dir / "store.json", "an ingested store's description")["fingerprint"]


def prepare(cfg: StreamConfig, out: Path | None = None, memory_limit: str | None = None) -> tuple[Stream, Path]:
    """Build the stream of `cfg` and write it to `out` (default: the cache). Returns it and its folder."""
    store_dir, fingerprint = _store_dir(cfg.source, memory_limit)
    if out is None:
        out = cache_root() / "prepared" / f"{stream_key(cfg)}-{fingerprint}"
    with _writing(out):
        return _build(cfg, store_dir, out), out


def open_stream(cfg: StreamConfig) -> tuple[Stream, Path]:
    """The prepared stream of `cfg` from the cache, preparing it first if needed (the store's arrays
    are loaded only then: a prepared stream is found by the store's fingerprint alone)."""
    store_dir, fingerprint = _store_dir(cfg.source)
    out = cache_root() / "prepared" / f"{stream_key(cfg)}-{fingerprint}"
    if (out / "manifest.json").is_file():
        return load_stream(out), out
    with _writing(out):
        if (out / "manifest.json").is_file():  # another process wrote it while this one waited
            return load_stream(out), out
        return _build(cfg, store_dir, out), out
