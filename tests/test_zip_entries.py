"""Archives are refused on their central directory's entry count before zipfile reads them."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import pytest

from bot.errors import UserFacingError
from bot.training import archive
from bot.training.archive import ArchiveLimits, read_archive
from bot.training.zip_entries import central_directory, count_headers
from tests.crafted import empty_entries_zip, three_hundred_thousand_entries, zipfile_names

LIMITS = ArchiveLimits(files=50, total_bytes=10_000_000, file_bytes=1_000_000)


@pytest.fixture
def no_zipfile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the archive reader builds a ZipFile at all."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("zipfile.ZipFile was built for an archive refused by its count")

    monkeypatch.setattr(archive.zipfile, "ZipFile", refuse)


def refusal(data: bytes, limits: ArchiveLimits = LIMITS) -> UserFacingError:
    with pytest.raises(UserFacingError) as caught:
        read_archive(data, limits)
    return caught.value


def test_300000_entries_are_refused_by_count_without_zipfile(no_zipfile):
    data = three_hundred_thousand_entries()
    tracemalloc.start()
    try:
        error = refusal(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.key == "archive.too_many_files"
    assert error.params == {"count": 300_000, "limit": 50}
    assert peak < 100_000  # bytes: nothing is built per entry (zipfile: ~150 MB here)


def test_an_end_record_claiming_fewer_entries_than_listed_is_refused_without_zipfile(no_zipfile):
    # zipfile reads headers until the directory's size is used up, whatever the count says.
    assert refusal(empty_entries_zip(5_000, declared=3)).key == "archive.bad"
    assert refusal(empty_entries_zip(5_000, declared=3, zip64=True)).key == "archive.bad"


@pytest.mark.parametrize("zip64", [False, True])
def test_the_zip64_count_is_the_one_read(no_zipfile, zip64):
    data = empty_entries_zip(101, zip64=zip64)
    assert central_directory(data).declared == 101
    assert refusal(data).params == {"count": 101, "limit": 50}


def test_folders_do_not_count_against_the_file_limit():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for index in range(LIMITS.files):
            zf.mkdir(f"set{index}")
            zf.writestr(f"set{index}/{index}.txt", b"x")
    assert len(read_archive(buf.getvalue(), LIMITS).files) == LIMITS.files


def zipfile_made(comment: bytes = b"", prefix: bytes = b"", zip64: bool = False) -> bytes:
    buf = io.BytesIO()
    buf.write(prefix)  # a self-extracting stub before the archive
    with zipfile.ZipFile(buf, "a" if prefix else "w", allowZip64=True) as zf:
        for index in range(7):
            zf.writestr(f"{index}.txt", b"x" * index, zipfile.ZIP_DEFLATED)
        zf.mkdir("folder")
        zf.comment = comment
        if zip64:
            with zf.open("big.txt", "w", force_zip64=True) as handle:
                handle.write(b"y")
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        zipfile_made(),
        zipfile_made(comment=b"made for the training set " * 100),
        zipfile_made(prefix=b"#!/bin/sh\nexit 0\n" * 50),
        zipfile_made(zip64=True),
        empty_entries_zip(9, zip64=True, comment=b"c"),
    ],
    ids=["plain", "comment", "prefixed", "zip64-member", "zip64-end"],
)
def test_the_count_agrees_with_zipfile(data):
    directory = central_directory(data)
    assert count_headers(data, directory, stop_after=1000) == len(zipfile_names(data))


@pytest.mark.parametrize(
    "data",
    [b"", b"PK\x05\x06", b"not a zip at all" * 10, empty_entries_zip(4)[:-30], b"\0" * 100],
    ids=["empty", "bare-signature", "text", "truncated", "zeros"],
)
def test_damaged_archives_are_bad(data):
    assert refusal(data).key == "archive.bad"
