"""Originals as served: the stored bytes with GPS and other location tags taken out.

Storage keeps what was uploaded (the hash and the duplicate check name those bytes); this
module rewrites only the metadata on the way out and never decodes or re-encodes pixels.

How each format is handled:

- EXIF, wherever it sits, is scrubbed in place, keeping its length: every GPS IFD's values
  and entries are overwritten with zeros and the IFD is left with no entries. Every other
  byte stays where it was, so orientation, DateTimeOriginal, the embedded thumbnail and maker
  notes (whose offsets are absolute, and which a re-serialisation such as Pillow's
  ``Exif.tobytes()`` would break or drop) survive untouched. The embedded JPEG thumbnail
  (IFD1) is walked too: its own EXIF is scrubbed the same way, its XMP and IPTC zeroed in
  place. EXIF that cannot be parsed
  cannot be proven clean, so it is dropped (JPEG, PNG) or blanked (WebP, HEIC).
- JPEG: the segments before the scan are read one by one (each at most 64 KB); APP1 EXIF is
  scrubbed, APP1 XMP (which may carry ``exif:GPSLatitude``, ``photoshop:City``) and APP13
  IPTC (City, Sub-location, Country) are dropped whole. The scan data is copied in chunks;
  the EXIF of images embedded behind the first (MPF) is scrubbed in place on the way.
- PNG: the ``eXIf`` chunk is scrubbed (its CRC recomputed); text chunks holding XMP or raw
  EXIF/IPTC profiles are dropped. Other chunks, IDAT included, are copied in chunks.
- WebP: the ``EXIF`` chunk is scrubbed; the ``XMP `` chunk becomes an unknown chunk of the
  same size filled with zeros (readers must ignore unknown chunks), so the RIFF size and
  every other chunk stay as they were.
- HEIC: the EXIF item's position is only known from the ISO BMFF boxes, which pillow-heif
  reads from the whole file; HEIC originals are therefore read into memory (phone HEICs are
  a few MB) and the EXIF blob is scrubbed where it lies. The XMP item (which may carry
  ``exif:GPSLatitude`` or ``photoshop:City``) is overwritten where it lies by an empty XMP
  packet padded with whitespace to the same length, so no box or offset moves.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

logger = logging.getLogger(__name__)

# Appended to the stored hash in the ETag of bytes served with location removed: the served
# bytes differ from the stored ones, and so must their validator.
ETAG_SUFFIX = "noloc"

GPS_IFD_TAG = 0x8825
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_MAX_IFDS = 8  # IFD0, IFD1 and a little slack; a longer chain is a loop or an attack

_EXIF_HEADER = b"Exif\x00\x00"
_XMP_HEADERS = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")
_PNG_DROPPED_KEYWORDS = (
    b"XML:com.adobe.xmp",
    b"Raw profile type exif",
    b"Raw profile type APP1",
    b"Raw profile type xmp",
    b"Raw profile type iptc",
)


class _Malformed(Exception):
    """The metadata cannot be parsed, so it cannot be proven free of location."""


def exif_location_removed(tiff: bytes) -> bytes | None:
    """The TIFF-structured EXIF ``tiff`` (starting at its ``II``/``MM`` byte order mark) with
    every GPS IFD emptied and its values zeroed, the same length; None if it cannot be
    parsed."""
    try:
        return bytes(_scrub_tiff(bytearray(tiff)))
    except (_Malformed, struct.error):
        return None


def _scrub_tiff(tiff: bytearray | memoryview, depth: int = 0) -> bytearray | memoryview:
    order = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    if order is None or struct.unpack_from(order + "H", tiff, 2)[0] != 42:
        raise _Malformed("not a TIFF header")
    offset = struct.unpack_from(order + "I", tiff, 4)[0]
    seen: set[int] = set()
    while offset and len(seen) < _MAX_IFDS:
        if offset in seen:
            raise _Malformed("IFD chain loops")
        seen.add(offset)
        thumbnail: dict[int, int] = {}
        for tag, type_, _count, value, at in _entries(tiff, order, offset):
            if tag == GPS_IFD_TAG:
                _empty_ifd(tiff, order, value)
            elif tag in (_THUMBNAIL_START, _THUMBNAIL_LENGTH):
                short = type_ == 3  # the standard says LONG; SHORT sits in the first 2 bytes
                thumbnail[tag] = struct.unpack_from(order + ("H" if short else "I"), tiff, at + 8)[
                    0
                ]
        if len(thumbnail) == 2:
            _scrub_thumbnail(tiff, thumbnail[_THUMBNAIL_START], thumbnail[_THUMBNAIL_LENGTH], depth)
        count = struct.unpack_from(order + "H", tiff, offset)[0]
        offset = struct.unpack_from(order + "I", tiff, offset + 2 + 12 * count)[0]
    return tiff


_THUMBNAIL_START, _THUMBNAIL_LENGTH = 0x0201, 0x0202  # IFD1's JPEGInterchangeFormat(Length)


def _scrub_thumbnail(tiff: bytearray | memoryview, start: int, length: int, depth: int) -> None:
    """Scrub, in place, the metadata of the JPEG thumbnail at ``tiff[start:start+length]``.

    A thumbnail is a small JPEG and may carry an APP1 EXIF of its own, GPS included (some
    editors copy the whole EXIF into it). Its EXIF is scrubbed as the outer one is; its XMP,
    IPTC and unreadable EXIF are zeroed (an APP segment of zeros is one readers skip)."""
    end = start + length
    if not length or end > len(tiff):
        raise _Malformed("thumbnail outside the EXIF")
    if tiff[start : start + 2] != b"\xff\xd8":
        return  # not a JPEG thumbnail: no segments, so no metadata of its own
    at = start + 2
    while at + 4 <= end:
        if tiff[at] != 0xFF:
            raise _Malformed("thumbnail segment without a marker")
        kind = tiff[at + 1]
        if kind in (0xDA, 0xD9):
            return
        if 0xD0 <= kind <= 0xD7 or kind in (0x01, 0xFF):
            at += 1 if kind == 0xFF else 2
            continue
        segment_end = at + 2 + struct.unpack_from(">H", tiff, at + 2)[0]
        if segment_end > end:
            raise _Malformed("thumbnail segment runs past the thumbnail")
        payload = memoryview(tiff)[at + 4 : segment_end]
        if kind == 0xE1 and bytes(payload[: len(_EXIF_HEADER)]) == _EXIF_HEADER:
            if depth >= 2:  # a thumbnail's thumbnail's thumbnail: no camera writes that
                raise _Malformed("thumbnails nested too deep")
            try:
                _scrub_tiff(payload[len(_EXIF_HEADER) :], depth + 1)
            except (_Malformed, struct.error):
                payload[:] = bytes(len(payload))
        elif kind in (0xE1, 0xED):  # XMP, IPTC, or an APP1 we cannot read
            payload[:] = bytes(len(payload))
        at = segment_end


def _entries(tiff: bytearray, order: str, offset: int) -> list[tuple[int, int, int, int, int]]:
    if offset + 2 > len(tiff):
        raise _Malformed("IFD outside the EXIF")
    count = struct.unpack_from(order + "H", tiff, offset)[0]
    if offset + 2 + 12 * count + 4 > len(tiff):
        raise _Malformed("IFD runs past the EXIF")
    entries = []
    for i in range(count):
        at = offset + 2 + 12 * i
        tag, type_, n, value = struct.unpack_from(order + "HHII", tiff, at)
        entries.append((tag, type_, n, value, at))
    return entries


def _empty_ifd(tiff: bytearray, order: str, offset: int) -> None:
    entries = _entries(tiff, order, offset)
    for _tag, type_, count, value, _at in entries:
        size = _TYPE_SIZES.get(type_, 1) * count
        if size > 4:  # stored elsewhere, at ``value``: the coordinates themselves
            if value + size > len(tiff):
                raise _Malformed("GPS value outside the EXIF")
            tiff[value : value + size] = bytes(size)
    # No entries and no next IFD: a valid, empty GPS IFD.
    tiff[offset : offset + 2 + 12 * len(entries) + 4] = bytes(2 + 12 * len(entries) + 4)


def _read_exact(source: BinaryIO, size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise _Malformed("file ends inside its metadata")
    return data


def _copy(source: BinaryIO, size: int, chunk_size: int) -> Iterator[bytes]:
    while size > 0:
        chunk = _read_exact(source, min(size, chunk_size))
        size -= len(chunk)
        yield chunk


def _rest(source: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    while chunk := source.read(chunk_size):
        yield chunk


# --- JPEG -----------------------------------------------------------------------------------------
def _jpeg(source: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    if _read_exact(source, 2) != b"\xff\xd8":
        raise _Malformed("not a JPEG")
    # Everything before the scan goes out as one piece, once all of it has been walked.
    head = [b"\xff\xd8"]
    while True:
        marker = _read_exact(source, 2)
        if marker[0] != 0xFF:
            raise _Malformed("JPEG segment without a marker")
        while marker[1] == 0xFF:  # fill bytes before a marker
            marker = b"\xff" + _read_exact(source, 1)
        kind = marker[1]
        if kind in (0xDA, 0xD9):  # start of scan (or a JPEG with none): the rest is pixels
            head.append(marker)
            break
        if 0xD0 <= kind <= 0xD7 or kind == 0x01:  # markers without a length
            head.append(marker)
            continue
        length = _read_exact(source, 2)
        size = struct.unpack(">H", length)[0]
        if size < 2:
            raise _Malformed("JPEG segment length below 2")
        payload = _read_exact(source, size - 2)
        if kind == 0xE1 and payload.startswith(_EXIF_HEADER):
            clean = exif_location_removed(payload[len(_EXIF_HEADER) :])
            if clean is None:
                logger.warning("original: unreadable EXIF segment dropped")
                continue
            head.append(marker + length + _EXIF_HEADER + clean)
        elif (kind == 0xE1 and payload.startswith(_XMP_HEADERS)) or kind == 0xED:
            continue  # XMP or IPTC: may name the place; dropped whole
        else:
            head.append(marker + length + payload)
    yield b"".join(head)
    yield from _embedded_exif_scrubbed(source, chunk_size)


_APP1 = b"\xff\xe1"


def _embedded_exif_scrubbed(source: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    """The rest of a JPEG, with the EXIF of any JPEG embedded after the first scrubbed too.

    Phones append more images behind the first (MPF: a second rendition, a depth or gain map),
    each with its own APP1 EXIF. Entropy-coded data cannot hold FF E1 (every 0xFF in it is
    followed by 00 or a restart marker), so an ``FF E1 <length> Exif\0\0`` met here is such a
    segment. It is scrubbed in place, or zeroed if unreadable, keeping its length: the MPF
    index locates those images by offset. Memory holds a chunk plus at most one segment."""
    buffer = bytearray()
    done = False
    while True:
        at = buffer.find(_APP1)
        if at < 0 or len(buffer) - at < 10 + 2:
            if done:
                yield bytes(buffer)
                return
            if at < 0:
                # Keep a trailing 0xFF: it may begin a marker that the next read completes.
                keep = 1 if buffer.endswith(b"\xff") else 0
                if len(buffer) > keep:
                    yield bytes(buffer[: len(buffer) - keep])
                    del buffer[: len(buffer) - keep]
            chunk = source.read(chunk_size)
            done = not chunk
            buffer += chunk
            continue
        size = struct.unpack_from(">H", buffer, at + 2)[0]
        if buffer[at + 4 : at + 10] != _EXIF_HEADER or size < 8:
            yield bytes(buffer[: at + 2])
            del buffer[: at + 2]
            continue
        end = at + 2 + size
        while len(buffer) < end and not done:
            chunk = source.read(chunk_size)
            done = not chunk
            buffer += chunk
        if len(buffer) < end:
            raise _Malformed("embedded EXIF segment cut short")
        tiff = bytes(buffer[at + 10 : end])
        clean = exif_location_removed(tiff)
        buffer[at + 10 : end] = clean if clean is not None else bytes(len(tiff))
        yield bytes(buffer[:end])
        del buffer[:end]


# --- PNG ------------------------------------------------------------------------------------------
def _png(source: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    if _read_exact(source, 8) != _PNG_SIGNATURE:
        raise _Malformed("not a PNG")
    yield _PNG_SIGNATURE
    while True:
        header = _read_exact(source, 8)
        length, kind = struct.unpack(">I4s", header)
        if kind == b"eXIf":
            data = _read_exact(source, length)
            _read_exact(source, 4)  # the old CRC
            clean = exif_location_removed(data)
            if clean is None:
                logger.warning("original: unreadable eXIf chunk dropped")
                continue
            yield header + clean + struct.pack(">I", zlib.crc32(kind + clean))
        elif kind in _PNG_TEXT_TYPES:
            # The keyword (at most 79 bytes and its NUL) decides; the text is never held whole.
            head = _read_exact(source, min(length, 80))
            if head.split(b"\x00", 1)[0] in _PNG_DROPPED_KEYWORDS:
                for _ in _copy(source, length - len(head) + 4, chunk_size):
                    pass
                continue
            yield header + head
            yield from _copy(source, length - len(head) + 4, chunk_size)
        else:
            yield header
            yield from _copy(source, length + 4, chunk_size)
        if kind == b"IEND":
            break
    yield from _rest(source, chunk_size)


# --- WebP -----------------------------------------------------------------------------------------
def _webp(source: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    riff = _read_exact(source, 12)
    if riff[:4] != b"RIFF" or riff[8:] != b"WEBP":
        raise _Malformed("not a WebP")
    yield riff
    while header := source.read(8):
        if len(header) != 8:
            raise _Malformed("WebP chunk header cut short")
        kind, size = struct.unpack("<4sI", header)
        padded = size + (size & 1)
        if kind == b"EXIF":
            data = _read_exact(source, padded)
            # Some writers keep JPEG's "Exif\0\0" in front of the TIFF header.
            prefix = _EXIF_HEADER if data.startswith(_EXIF_HEADER) else b""
            clean = exif_location_removed(data[len(prefix) : size])
            if clean is None:
                logger.warning("original: unreadable WebP EXIF chunk blanked")
                yield b"JUNK" + header[4:] + bytes(padded)
            else:
                yield header + prefix + clean + data[size:]
        elif kind == b"XMP ":
            for _ in _copy(source, padded, chunk_size):
                pass
            yield b"JUNK" + header[4:] + bytes(padded)
        else:
            yield header
            yield from _copy(source, padded, chunk_size)


# --- HEIC -----------------------------------------------------------------------------------------
def _heic(source: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    import pillow_heif  # registered by core.imaging already; imported here for its reader

    data = bytearray(source.read())
    try:
        info = pillow_heif.open_heif(io.BytesIO(data)).info
    except (ValueError, RuntimeError) as error:
        raise _Malformed(f"HEIC unreadable: {error}") from None
    exif, xmp = info.get("exif"), info.get("xmp")
    if exif:
        tiff = exif[len(_EXIF_HEADER) :] if exif.startswith(_EXIF_HEADER) else exif
        at = data.find(tiff)
        if at < 0:
            raise _Malformed("HEIC EXIF not stored in one piece")
        clean = exif_location_removed(tiff)
        data[at : at + len(tiff)] = clean if clean is not None else bytes(len(tiff))
    if xmp:
        at = data.find(xmp)
        if at < 0:
            raise _Malformed("HEIC XMP not stored in one piece")
        data[at : at + len(xmp)] = _empty_xmp(len(xmp))
    for start in range(0, len(data), chunk_size):
        yield bytes(data[start : start + chunk_size])


_EMPTY_XMP_HEAD = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
)
_EMPTY_XMP_TAIL = b'<?xpacket end="w"?>'


def _empty_xmp(size: int) -> bytes:
    """An XMP packet that says nothing, ``size`` bytes long: XMP allows whitespace padding
    before the closing processing instruction. Too little room for even that, spaces only."""
    room = size - len(_EMPTY_XMP_HEAD) - len(_EMPTY_XMP_TAIL)
    if room < 0:
        return b" " * size
    return _EMPTY_XMP_HEAD + b" " * room + _EMPTY_XMP_TAIL


_BY_TYPE = {"image/jpeg": _jpeg, "image/png": _png, "image/webp": _webp, "image/heic": _heic}


class LocationNotRemovable(Exception):
    """The original's metadata cannot be parsed, so it is not served: location might leak."""


def location_removed(
    source: BinaryIO, content_type: str, *, chunk_size: int = 256 * 1024
) -> Iterator[bytes]:
    """The bytes of ``source`` (an original of ``content_type``) with location removed, in
    pieces of about ``chunk_size``. Metadata this module cannot walk raises
    ``LocationNotRemovable`` instead of being passed on: nothing unchecked is served. Only
    the magic bytes are checked before the first piece, so a caller that wants a clean error
    status asks for that piece before it starts its answer."""
    rewrite = _BY_TYPE.get(content_type)
    if rewrite is None:
        raise LocationNotRemovable(f"no location removal for {content_type}")
    try:
        yield from rewrite(source, chunk_size)
    except (_Malformed, struct.error) as error:
        raise LocationNotRemovable(str(error)) from None


class ServedOriginal(NamedTuple):
    pieces: Iterator[bytes]  # closes the stored file when exhausted or closed
    length: int | None  # of the served bytes, when known before sending them


def original_pieces(
    source: BinaryIO,
    content_type: str,
    *,
    size: int,
    keep_location: bool,
    chunk_size: int = 256 * 1024,
) -> ServedOriginal:
    """The original to serve, from the open stored file ``source`` of ``size`` bytes.

    Without ``keep_location`` the first piece is taken now, so that an original whose
    metadata cannot be walked raises ``LocationNotRemovable`` here, before any answer has
    started (for JPEG that piece is everything before the scan, so the served length is known
    too; WebP and HEIC keep their length; PNG may lose text chunks further on)."""
    if keep_location:
        return ServedOriginal(_closing(b"", _rest(source, chunk_size), source), size)
    stream = location_removed(source, content_type, chunk_size=chunk_size)
    try:
        first = next(stream, b"")
        length = {
            "image/jpeg": size - source.tell() + len(first),
            "image/webp": size,
            "image/heic": size,
        }.get(content_type)
    except LocationNotRemovable:
        source.close()
        raise
    return ServedOriginal(_closing(first, stream, source), length)


def _closing(first: bytes, rest: Iterator[bytes], source: BinaryIO) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    finally:
        source.close()
