"""Compressed bodies that inflate far beyond their size (gzip "bombs"), built in milliseconds: a
deflate block of zeros is compressed once, with a full flush, and repeated."""

from __future__ import annotations

import struct
import zlib

_MIB = 1024 * 1024


def gzip_bomb(inflated_mib: int, prefix: bytes = b'{"items": [], "pad": "', suffix: bytes = b'"}') -> bytes:
    """A gzip body: ``prefix``, ``inflated_mib`` MiB of ``0``, ``suffix`` (valid JSON with the defaults)."""
    chunk = b"0" * _MIB
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.compress(suffix) + c.flush()
    crc = zlib.crc32(prefix)
    for _ in range(inflated_mib):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(suffix, crc)
    size = (len(prefix) + inflated_mib * _MIB + len(suffix)) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + head + block * inflated_mib + tail + struct.pack("<II", crc, size)
