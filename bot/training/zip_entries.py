"""Counting a ZIP archive's entries from its end records, before anything is built from it.

`zipfile.ZipFile` turns every central-directory header into a ZipInfo object as soon as it opens
an archive: 300,000 empty entries cost seconds and hundreds of MB before any count can be
checked. These readers look only at the end records and at the first headers, locating
them exactly as zipfile does, so what passes here is what zipfile will then read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bot.errors import UserFacingError

_END = struct.Struct("<4sHHHHIIH")  # end of central directory record
_END_SIGNATURE = b"PK\x05\x06"
_COMMENT_REACH = 1 << 16  # how far back zipfile looks for the end record
_LOCATOR = struct.Struct("<4sIQI")  # ZIP64 end of central directory locator
_LOCATOR_SIGNATURE = b"PK\x06\x07"
_END64 = struct.Struct("<4sQHHIIQQQQ")  # ZIP64 end of central directory record
_END64_SIGNATURE = b"PK\x06\x06"
_HEADER = struct.Struct("<4s24xHHH12x")  # central directory header: names, extra, comment sizes
_HEADER_SIGNATURE = b"PK\x01\x02"


@dataclass(frozen=True)
class CentralDirectory:
    """Where the central directory is and how many entries its end record declares."""

    start: int
    size: int
    declared: int


def central_directory(data: bytes) -> CentralDirectory:
    """Read the end record (and its ZIP64 version when present) as zipfile finds them."""
    end_at = _find_end(data)
    if end_at < 0 or end_at + _END.size > len(data):
        raise UserFacingError("archive.bad")
    _, _, _, _, declared, size, _, _ = _END.unpack_from(data, end_at)
    start = end_at - size
    locator_at = end_at - _LOCATOR.size
    end64_at = locator_at - _END64.size
    if locator_at >= 0 and data.startswith(_LOCATOR_SIGNATURE, locator_at):
        _, disk, _, disks = _LOCATOR.unpack_from(data, locator_at)
        if disk != 0 or disks > 1:
            raise UserFacingError("archive.bad")  # spans several disks
        if end64_at >= 0 and data.startswith(_END64_SIGNATURE, end64_at):
            fields = _END64.unpack_from(data, end64_at)
            declared, size = fields[7], fields[8]
            start = end64_at - size
    if start < 0:
        raise UserFacingError("archive.bad")
    return CentralDirectory(start, size, declared)


def count_headers(data: bytes, directory: CentralDirectory, stop_after: int) -> int:
    """Count the headers in the central directory, stopping once more than `stop_after`."""
    position, end = directory.start, directory.start + directory.size
    count = 0
    while position < end and count <= stop_after:
        if position + _HEADER.size > end:
            raise UserFacingError("archive.bad")
        signature, name, extra, comment = _HEADER.unpack_from(data, position)
        if signature != _HEADER_SIGNATURE:
            raise UserFacingError("archive.bad")
        position += _HEADER.size + name + extra + comment
        count += 1
    return count


def _find_end(data: bytes) -> int:
    """Offset of the end record: at the very end, else the last one within a comment's reach."""
    at = len(data) - _END.size
    if at >= 0 and data.startswith(_END_SIGNATURE, at) and data.endswith(b"\0\0"):
        return at
    return data.rfind(_END_SIGNATURE, max(0, at - _COMMENT_REACH))
