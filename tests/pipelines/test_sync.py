"""Data sync: verified copies, idempotence, repair of a corrupt cache, refusal of a bad mirror."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.errors import DataSyncError
from features.io import usual_file_mode
from pipelines.cli import app
from pipelines.manifest import ManifestEntry, manifest_hash, read_manifest, sha256_of
from pipelines.sync import resolve_mirror, sync, verify_cache


def _write(path: Path, data: bytes) -> ManifestEntry:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    rel = path.name if path.parent.name == "mirror" else f"{path.parent.name}/{path.name}"
    return ManifestEntry(rel, len(data), hashlib.sha256(data).hexdigest(), "https://invalid", "x")


@pytest.fixture
def mirror(tmp_path) -> tuple[Path, list[ManifestEntry]]:
    """A two-file synthetic mirror and its manifest entries."""
    root = tmp_path / "mirror"
    entries = [
        _write(root / "a" / "one.csv", b"code,value\n371721,1\n"),
        _write(root / "b" / "two.txt", b"371721 \xe6\x9b\xb9\xe5\x8e\xbf\n"),
    ]
    return root, entries


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def test_second_sync_copies_nothing(tmp_path, mirror):
    root, entries = mirror
    first = sync(tmp_path / "cache", root, entries, show_progress=False)
    second = sync(tmp_path / "cache", root, entries, show_progress=False)
    assert (len(first.fetched), len(first.verified)) == (2, 0)
    assert (len(second.fetched), len(second.verified)) == (0, 2)
    assert second.summary().startswith("2 file(s) already verified in the cache, 0 fetched")


def test_synced_files_have_the_usual_mode(tmp_path, mirror):
    root, entries = mirror
    sync(tmp_path / "cache", root, entries, show_progress=False)
    for entry in entries:
        assert (tmp_path / "cache" / entry.path).stat().st_mode & 0o777 == usual_file_mode()


def test_a_corrupt_cached_file_is_named_and_fetched_again(tmp_path, mirror):
    root, entries = mirror
    cache = tmp_path / "cache"
    sync(cache, root, entries, show_progress=False)
    _flip_byte(cache / "a" / "one.csv")
    report = sync(cache, root, entries, show_progress=False)
    assert report.repaired == ["a/one.csv"]
    assert report.fetched == ["a/one.csv"]
    assert not report.failures
    assert sha256_of(cache / "a" / "one.csv") == entries[0].sha256


def test_a_corrupt_mirror_file_fails_and_leaves_the_good_cache(tmp_path, mirror):
    root, entries = mirror
    cache = tmp_path / "cache"
    sync(cache, root, entries, show_progress=False)
    _flip_byte(root / "a" / "one.csv")
    report = sync(cache, root, entries, show_progress=False)
    assert len(report.failures) == 1
    assert "mirror file" in report.failures[0] and "a/one.csv" in report.failures[0]
    assert f"expected {entries[0].sha256}, got {sha256_of(root / 'a' / 'one.csv')}" in (report.failures[0])
    assert sha256_of(cache / "a" / "one.csv") == entries[0].sha256


def test_a_corrupt_mirror_never_reaches_an_empty_cache(tmp_path, mirror):
    root, entries = mirror
    _flip_byte(root / "a" / "one.csv")
    cache = tmp_path / "cache"
    report = sync(cache, root, entries, show_progress=False)
    assert not (cache / "a" / "one.csv").exists()
    assert report.fetched == ["b/two.txt"]
    assert not list(cache.rglob("*.part"))


def test_a_file_missing_everywhere_is_named(tmp_path, mirror):
    root, entries = mirror
    (root / "b" / "two.txt").unlink()
    unreachable = ManifestEntry("b/two.txt", 1, entries[1].sha256, "ftp://nowhere", "x")
    report = sync(tmp_path / "cache", root, [entries[0], unreachable], show_progress=False)
    assert report.failures == [
        "b/two.txt: could not be fetched: b/two.txt: no mirror copy and no usable upstream url 'ftp://nowhere'"
    ]


def test_resolve_mirror_order(tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir()
    env.mkdir()
    monkeypatch.setenv("BELTCAST_DATA_MIRROR", str(env))
    assert resolve_mirror(explicit, None) == explicit
    assert resolve_mirror(None, None) == env
    with pytest.raises(DataSyncError, match=r"mirror directory .*absent does not exist"):
        resolve_mirror(tmp_path / "absent", None)


def test_packaged_manifest_is_well_formed():
    entries = read_manifest()
    assert len(entries) == 52
    assert len({entry.path for entry in entries}) == len(entries)
    assert all(e.url.startswith(("https://raw.githubusercontent.com/", "pypi:")) for e in entries)
    assert len(manifest_hash(entries)) == 64


def test_manifest_with_a_bad_checksum_names_the_line(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("path,bytes,sha256,url,license\na.csv,3,abc,https://x,MIT\n")
    with pytest.raises(DataSyncError, match=r"line 2: sha256 must be 64 hex digits; got 'abc'"):
        read_manifest(path)


def test_cli_sync_twice_then_fail_on_a_bad_mirror(tmp_path, raw_dir):
    """The real manifest against the real mirror, through the command line."""
    mirror = tmp_path / "mirror"
    config = tmp_path / "beltcast.toml"
    config.write_text(f'[data]\ncache_dir = "{tmp_path / "cache"}"\nmirror_dir = "{mirror}"\n')
    mirror.symlink_to(raw_dir, target_is_directory=True)
    runner = CliRunner()
    first = runner.invoke(app, ["data", "sync", "--config", str(config)])
    second = runner.invoke(app, ["data", "sync", "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert "52 fetched and verified" in first.output
    assert "52 file(s) already verified in the cache, 0 fetched and verified" in second.output


def test_a_cache_changed_since_the_sync_is_named_before_a_job_reads_it(mirror, tmp_path):
    root, entries = mirror
    cache = tmp_path / "cache"
    sync(cache, root, entries, show_progress=False)
    verify_cache(cache, entries)  # as synced: nothing to say
    (cache / "a" / "one.csv").write_bytes(b"code,value\n")  # cut at a line end: still reads as a CSV
    (cache / "b" / "two.txt").unlink()
    with pytest.raises(DataSyncError) as caught:
        verify_cache(cache, entries)
    message = str(caught.value)
    assert f"{cache / 'a' / 'one.csv'}: sha256 mismatch, expected {entries[0].sha256}, got " in message
    assert f"{cache / 'b' / 'two.txt'}: missing" in message
    assert message.endswith("run `beltcast data sync`")


def test_a_cache_never_synced_says_so_in_one_line(mirror, tmp_path):
    _, entries = mirror
    with pytest.raises(DataSyncError, match=r"holds none of the manifest's 2 files; run `beltcast data sync`$"):
        verify_cache(tmp_path / "never-synced", entries)


def test_a_known_digest_is_read_again_once_the_file_changes(tmp_path):
    import os

    from pipelines.manifest import known_sha256

    path = tmp_path / "platform_metrics_synthetic.csv"
    path.write_text("county_code,period\n371721,2025Q3\n", encoding="utf-8")
    first = known_sha256(path)
    assert first == sha256_of(path) and known_sha256(path) == first
    path.write_text("county_code,period\n371721,2025Q4\n", encoding="utf-8")  # same size
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert known_sha256(path) == sha256_of(path) != first
