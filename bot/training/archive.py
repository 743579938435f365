"""Reading ZIP archives of training images without trusting anything they declare."""

from __future__ import annotations

import copy
import re
import zipfile
from dataclasses import dataclass, field
from io import BytesIO
from typing import IO

from bot.errors import UserFacingError
from bot.training.zip_entries import central_directory, count_headers

CHUNK = 64 * 1024
NESTED_SUFFIXES = (".zip", ".rar", ".7z", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".jar")
NESTED_MAGIC = (b"PK\x03\x04", b"Rar!", b"7z\xbc\xaf", b"\x1f\x8b", b"BZh", b"\xfd7zXZ")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds applied to one archive."""

    files: int
    total_bytes: int
    file_bytes: int


@dataclass
class ArchiveMembers:
    """The regular files of an archive, read into memory, in archive order."""

    files: list[tuple[str, bytes]] = field(default_factory=list)


def read_archive(data: bytes, limits: ArchiveLimits) -> ArchiveMembers:
    """Check the central directory, then read every file with bounded readers.

    Raises UserFacingError (`archive.*`) on anything unsafe; never writes to disk.
    """
    check_entry_count(data, limits)
    try:
        zf = zipfile.ZipFile(BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UserFacingError("archive.bad") from None
    with zf:
        infos = [info for info in zf.infolist() if not info.is_dir()]
        check_directory(infos, limits)
        members = ArchiveMembers()
        remaining = limits.total_bytes
        for info in infos:
            content = _read_member(zf, info, min(limits.file_bytes, remaining), limits)
            remaining -= len(content)
            if content.startswith(NESTED_MAGIC):
                raise UserFacingError("archive.nested", name=_shown(info.filename))
            members.files.append((info.filename, content))
    return members


def check_entry_count(data: bytes, limits: ArchiveLimits) -> None:
    """Refuse on the central directory's entry count, before zipfile builds one object per entry.

    Folders are entries too: allow one per file. check_directory then counts the files exactly.
    """
    most = 2 * limits.files
    directory = central_directory(data)
    if directory.declared > most:
        raise UserFacingError(
            "archive.too_many_files", count=directory.declared, limit=limits.files
        )
    # The declared count may lie: zipfile reads headers until the directory's size is used up.
    if count_headers(data, directory, stop_after=most) > most:
        raise UserFacingError("archive.bad")


def check_directory(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    """Reject an archive by its central directory alone: count, names, declared sizes."""
    if len(infos) > limits.files:
        raise UserFacingError("archive.too_many_files", count=len(infos), limit=limits.files)
    declared = 0
    for info in infos:
        name = info.filename
        if unsafe_name(name):
            raise UserFacingError("archive.unsafe_name", name=_shown(name))
        if name.lower().endswith(NESTED_SUFFIXES):
            raise UserFacingError("archive.nested", name=_shown(name))
        if info.flag_bits & 0x1:
            raise UserFacingError("archive.encrypted", name=_shown(name))
        if info.file_size > limits.file_bytes:
            raise _file_too_large(name, limits)
        declared += info.file_size
    if declared > limits.total_bytes:
        raise _total_too_large(limits)


def unsafe_name(name: str) -> bool:
    """Whether a member name is absolute, has a drive letter or climbs out with '..'."""
    if not name or name.startswith(("/", "\\")) or _DRIVE.match(name) or "\x00" in name:
        return True
    return any(part == ".." for part in re.split(r"[\\/]", name))


def bounded_read(stream: IO[bytes], limit: int) -> bytes | None:
    """Read at most `limit` bytes; None when the stream holds more than that."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(CHUNK, limit - size + 1))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, limits: ArchiveLimits
) -> bytes:
    # The declared size may lie: bound the bytes actually decompressed, not the header.
    honest = copy.copy(info)
    honest.file_size = limit + 2  # one byte past what bounded_read may take: no CRC check
    try:
        with zf.open(honest) as stream:
            content = bounded_read(stream, limit)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
        raise UserFacingError("archive.bad_member", name=_shown(info.filename)) from None
    if content is None:
        if limit < limits.file_bytes:
            raise _total_too_large(limits)
        raise _file_too_large(info.filename, limits)
    return content


def _file_too_large(name: str, limits: ArchiveLimits) -> UserFacingError:
    return UserFacingError(
        "archive.file_too_large", name=_shown(name), limit_mb=_mb(limits.file_bytes)
    )


def _total_too_large(limits: ArchiveLimits) -> UserFacingError:
    return UserFacingError("archive.too_large", limit_mb=_mb(limits.total_bytes))


def _shown(name: str) -> str:
    return name.replace("`", "'")[:80]


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}"
