"""The one data pipeline: config -> store (ingested once, cached) -> stream (prepared, cached)."""

from __future__ import annotations

from pathlib import Path

from ..config import StreamConfig
from .sources import cache_root
from .store import InteractionStore, open_store
from .stream import Stream, build_stream, load_stream, save_stream, stream_key


def prepare(cfg: StreamConfig, out: Path | None = None, memory_limit: str | None = None) -> tuple[Stream, Path]:
    """Build the stream of `cfg` and write it to `out` (default: the cache). Returns it and its folder."""
    store = open_store(cfg.source, cache_root(), memory_limit)
    stream = build_stream(cfg, store)
    if out is None:
        out = cache_root() / "prepared" / f"{stream_key(cfg)}-{store.meta['fingerprint']}"
    save_stream(stream, out)
    return stream, out


def open_stream(cfg: StreamConfig) -> tuple[Stream, Path]:
    """The prepared stream of `cfg` from the cache, preparing it first if needed."""
    store: InteractionStore = open_store(cfg.source, cache_root())
    out = cache_root() / "prepared" / f"{stream_key(cfg)}-{store.meta['fingerprint']}"
    if (out / "manifest.json").is_file():
        return load_stream(out), out
    stream = build_stream(cfg, store)
    save_stream(stream, out)
    return stream, out
