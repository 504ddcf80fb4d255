"""The one data pipeline: config -> store (ingested once, cached) -> stream (prepared, cached)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..config import SourceConfig, StreamConfig
from ..fsutil import clean_stale_temporaries, read_json
from .locks import cache_lock, clean_own_temporaries, path_lock_folder
from .sources import cache_root, fetch
from .store import InteractionStore, ensure_store, load_store, open_store
from .stream import Stream, build_stream, filter_columns, load_stream, save_stream, stream_key


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


def prepare(cfg: StreamConfig, out: Path | None = None, memory_limit: str | None = None) -> tuple[Stream, Path]:
    """Build the stream of `cfg` and write it to `out` (default: the cache). Returns it and its folder."""
    store = open_store(cfg.source, cache_root(), memory_limit, values=filter_columns(cfg), timestamps=False)
    stream = build_stream(cfg, store)
    if out is None:
        out = cache_root() / "prepared" / f"{stream_key(cfg)}-{store.meta['fingerprint']}"
    with _writing(out):
        _verify_source(cfg.source)
        save_stream(stream, out)
    return stream, out


def open_stream(cfg: StreamConfig) -> tuple[Stream, Path]:
    """The prepared stream of `cfg` from the cache, preparing it first if needed (the store's arrays
    are loaded only then: a prepared stream is found by the store's fingerprint alone)."""
    store_dir = ensure_store(cfg.source, cache_root())
    fingerprint = read_json(store_dir / "store.json", "an ingested store's description")["fingerprint"]
    out = cache_root() / "prepared" / f"{stream_key(cfg)}-{fingerprint}"
    if (out / "manifest.json").is_file():
        return load_stream(out), out
    with _writing(out):
        if (out / "manifest.json").is_file():  # another process wrote it while this one waited
            return load_stream(out), out
        _verify_source(cfg.source)
        store: InteractionStore = load_store(store_dir, values=filter_columns(cfg), timestamps=False)
        stream = build_stream(cfg, store)
        save_stream(stream, out)
    return stream, out
