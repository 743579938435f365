"""Files made byte by byte: ZIP archives (many entries, ZIP64, lying counts), slow PNGs."""

from __future__ import annotations

import functools
import io
import random
import struct
import zipfile
import zlib

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")
_END64 = struct.Struct("<4sQHHIIQQQQ")
_LOCATOR = struct.Struct("<4sIQI")
_DOS_DATE = 0x21  # 1980-01-01


def empty_entries_zip(
    count: int, *, declared: int | None = None, zip64: bool = False, comment: bytes = b""
) -> bytes:
    """A stored (uncompressed) archive of `count` empty files 000000.txt, 000001.txt, ...

    `declared` overrides the entry count written in the end records (a lying archive);
    `zip64` writes the ZIP64 end records with 0xFFFF/0xFFFFFFFF in the classic one, as zipfile
    does for more than 65,535 entries.
    """
    locals_: list[bytes] = []
    centrals: list[bytes] = []
    offset = 0
    for index in range(count):
        name = b"%06d.txt" % index
        local = _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, _DOS_DATE, 0, 0, 0, len(name), 0) + name
        centrals.append(
            _CENTRAL.pack(
                b"PK\x01\x02", 20, 20, 0, 0, 0, _DOS_DATE, 0, 0, 0, len(name), 0, 0, 0, 0, 0, offset
            )
            + name
        )
        locals_.append(local)
        offset += len(local)
    directory = b"".join(centrals)
    entries = count if declared is None else declared
    tail = b""
    if zip64 or entries > 0xFFFF:
        end64_at = offset + len(directory)
        tail = _END64.pack(
            b"PK\x06\x06", _END64.size - 12, 45, 45, 0, 0, entries, entries, len(directory), offset
        ) + _LOCATOR.pack(b"PK\x06\x07", 0, end64_at, 1)
        entries, size, start = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
    else:
        size, start = len(directory), offset
    end = _END.pack(b"PK\x05\x06", 0, 0, entries, entries, size, start, len(comment)) + comment
    return b"".join(locals_) + directory + tail + end


def heavy_png(width: int, height: int, seed: int = 0) -> bytes:
    """A valid 16-bit RGB PNG that is small to send but slow to decode (~0.5 s at 4096x4096).

    Every row holds the same random bytes, so zlib shrinks the image to ~1% by back-references
    while the decoder still inflates every byte and un-filters it, with Paeth on every other row.
    """
    pixels = random.Random(seed).randbytes(width * 6)
    rows = (b"\x04" + pixels, b"\x02" + pixels)  # Paeth, then Up
    packer = zlib.compressobj(1)
    body = b"".join(packer.compress(rows[y % 2]) for y in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND")


def _chunk(kind: bytes, data: bytes = b"") -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def zipfile_names(data: bytes) -> list[str]:
    """What zipfile itself lists in an archive."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.namelist()


@functools.cache
def three_hundred_thousand_entries() -> bytes:
    """The archive of issue 10: 300,000 empty files (28 MB, ZIP64), built once per session."""
    return empty_entries_zip(300_000)
