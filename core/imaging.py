"""Decoding and re-encoding images: sniffed by their bytes, judged by their headers, decoded at a
bounded scale.

Two kinds of work, kept apart:
- ``inspect`` runs in the request. It reads headers and structure only, never pixels, so an
  upload costs milliseconds and a few kilobytes whatever its pixel count.
- ``decode_upright`` decodes. The worker uses it for photos (up to PHOTO_MAX_PIXELS); a request
  uses it only for a selfie, with limits that bound what the decoder holds.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC from phones. Optional so that a machine without the wheel still runs the rest.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIC_SUPPORTED = True
except ImportError:  # pragma: no cover - the wheel is in requirements.txt
    HEIC_SUPPORTED = False

# Pillow's decompression-bomb guard stays on for the whole process: whatever code opens an image,
# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that before any pixel is decoded.
# Set to the largest image FindMe accepts at all, so that the guard never stops a legitimate
# photo. Every upload is held to its own, lower or equal, limit by the header checks below: the
# guard is the backstop, not the rule.
# Imported without Django settings, Pillow's own default (89 MP) stands.
with contextlib.suppress(ImproperlyConfigured):
    Image.MAX_IMAGE_PIXELS = max(settings.PHOTO_MAX_PIXELS, settings.SELFIE_MAX_PIXELS)

FORMAT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "HEIF": "image/heic",
}
EXIF_ORIENTATION = 0x0112
EXIF_DATETIME_ORIGINAL = 0x9003
EXIF_DATETIME = 0x0132
EXIF_IFD = 0x8769

# What Pillow raises for bytes it cannot parse or decode. pillow_heif turns libheif's errors into
# these too, except a body that fails to decode, which it leaves a RuntimeError.
_UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)


class ImageRejected(Exception):
    """The bytes are not an image we accept. ``code`` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ImageUndecodable(ImageRejected, UnidentifiedImageError):
    """The pixels do not decode: a damaged or cut-short body behind a readable header.

    Also Pillow's UnidentifiedImageError (an OSError): for every caller these bytes are no image
    that can be read, exactly as if Pillow had not recognised them, and no retry will read them.
    """

    def __init__(self, message: str) -> None:
        super().__init__("invalid_image", message)


class ImageTooLarge(ImageRejected, Image.DecompressionBombError):
    """More pixels than the caller allows: refused before they are decoded."""

    def __init__(self, message: str) -> None:
        super().__init__("image_too_large", message)


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    width: int  # upright, after EXIF orientation
    height: int
    taken_at: datetime | None


def sniff_type(head: bytes) -> str | None:
    """The content type from the first bytes, whatever the name or the client said."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if (
        len(head) >= 12
        and head[4:8] == b"ftyp"
        and head[8:12]
        in {
            b"heic",
            b"heix",
            b"hevc",
            b"hevx",
            b"heim",
            b"heis",
            b"mif1",
            b"msf1",
        }
    ):
        return "image/heic"
    return None


def _taken_at(exif: Image.Exif) -> datetime | None:
    try:
        raw = exif.get_ifd(EXIF_IFD).get(EXIF_DATETIME_ORIGINAL) or exif.get(EXIF_DATETIME)
    except Exception:  # noqa: BLE001 - broken EXIF must not reject an otherwise good photo
        return None
    if not raw or not isinstance(raw, str):
        return None
    try:
        # EXIF times have no zone; the camera's clock is all we know. Store them as UTC.
        return datetime.strptime(raw.strip("\x00 "), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _exif_from_bytes(raw: bytes | None) -> Image.Exif:
    exif = Image.Exif()
    if raw:
        try:
            exif.load(raw)
        except Exception:  # noqa: BLE001 - broken EXIF must not reject an otherwise good photo
            return Image.Exif()
    return exif


def _exif_from_header(image: Image.Image) -> Image.Exif:
    """The EXIF that the header carries, without decoding any pixel.

    ``getexif()`` is header-only for JPEG and HEIC, but a PNG's decodes the whole image when no
    eXIf chunk came before the pixels (Pillow looks for one after them). Such a PNG's orientation
    is applied by the worker, which decodes anyway.
    """
    if image.format == "PNG":
        return _exif_from_bytes(image.info.get("exif"))
    try:
        return image.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF must not reject an otherwise good photo
        return Image.Exif()


def _too_large(width: int, height: int, max_pixels: int) -> ImageTooLarge:
    return ImageTooLarge(
        f"The image has {width}x{height} pixels; the limit is {max_pixels:,} pixels."
    )


def _bomb(max_pixels: int | None) -> ImageTooLarge:
    limit = f" of {max_pixels:,} pixels" if max_pixels else ""
    return ImageTooLarge(f"The image has more pixels than the limit{limit}. Send a smaller one.")


def _unscalable(width: int, height: int, kind: str, max_decoded_pixels: int) -> ImageTooLarge:
    return ImageTooLarge(
        f"The image has {width}x{height} pixels. A {kind} cannot be read at a reduced size, so "
        f"its limit is {max_decoded_pixels:,} pixels. Send a photo straight from the camera "
        "(JPEG), or a smaller copy."
    )


def _file_size(fileobj: IO[bytes]) -> int:
    fileobj.seek(0, 2)
    size = fileobj.tell()
    fileobj.seek(0)
    return size


# --- JPEG structure -----------------------------------------------------------------------------
# In a JPEG's entropy-coded data every FF byte is followed by 00 (stuffing) or a restart marker
# (D0-D7); anything else after FF is the next marker. FF FF is padding before a marker.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_SCAN_BLOCK = 1 << 20


def _jpeg_next_marker(fileobj: IO[bytes], pos: int) -> int | None:
    """The offset of the first marker at or after ``pos``, skipping entropy-coded data."""
    while True:
        fileobj.seek(pos)
        block = fileobj.read(_SCAN_BLOCK)
        if len(block) < 2:
            return None
        found = _JPEG_MARKER.search(block)
        if found:
            return pos + found.start()
        pos += len(block) - 1  # a block may end between an FF and the byte after it


def _jpeg_is_whole(fileobj: IO[bytes]) -> bool:
    """A whole JPEG reaches its end marker (FFD9); a truncated upload does not.

    Most files end with it: the last bytes say so at once. Otherwise (a phone's motion-photo video
    or another trailer after the image, padding, or a cut-short file) the markers are walked from
    the start: segments by their lengths, scans by skipping their entropy-coded data, reading 1 MB
    at a time. Nothing is decoded, so the cost is a read of the file, whatever its pixel count.
    """
    size = _file_size(fileobj)
    fileobj.seek(max(0, size - 4096))
    tail = fileobj.read().rstrip(b"\x00\r\n ")
    if tail.endswith(b"\xff\xd9"):
        return True
    pos = 2
    try:
        while True:
            fileobj.seek(pos)
            marker = fileobj.read(4)
            if len(marker) < 2 or marker[0] != 0xFF:
                return False
            code = marker[1]
            if code == 0xFF:
                pos += 1
                continue
            if code == 0xD9:
                return True
            if code in _JPEG_STANDALONE:
                pos += 2
                continue
            if len(marker) < 4:
                return False
            length = int.from_bytes(marker[2:4], "big")
            if length < 2:
                return False
            pos += 2 + length
            if code == 0xDA:  # start of scan: its header, then entropy-coded data
                found = _jpeg_next_marker(fileobj, pos)
                if found is None:
                    return False
                pos = found
    finally:
        fileobj.seek(0)


# --- WebP structure -----------------------------------------------------------------------------
_WEBP_EXIF_MAX = 256 * 1024  # EXIF beyond this is not a camera's; the photo is kept without it


def _webp_header(fileobj: IO[bytes]) -> tuple[int, int, bytes | None]:
    """A WebP's canvas size and EXIF, read from its RIFF chunks without creating a decoder.

    Pillow hands a WebP to libwebp's animation decoder, which allocates the whole canvas as it
    opens the file (400 MB for 10000x10000), so the size is read here instead. The walk also
    proves the file whole: the RIFF size must fit in the file, and the chunks must tile it
    exactly. The compressed bitstream itself is left to the worker, which marks a photo whose
    body does not decode failed, with the reason.
    """

    def invalid(why: str) -> ImageRejected:
        return ImageRejected("invalid_image", f"The WebP file is damaged: {why}. Send it again.")

    file_size = _file_size(fileobj)
    header = fileobj.read(12)
    riff_end = 8 + int.from_bytes(header[4:8], "little")
    if riff_end > file_size:
        raise ImageRejected(
            "invalid_image",
            f"The WebP file is cut short: it announces {riff_end:,} bytes but has "
            f"{file_size:,}. Send it again.",
        )
    canvas: tuple[int, int] | None = None
    still: tuple[int, int] | None = None
    animated = frames = False
    exif: bytes | None = None
    pos = 12
    while pos < riff_end:
        fileobj.seek(pos)
        chunk = fileobj.read(8)
        if len(chunk) < 8 or pos + 8 > riff_end:
            raise invalid("a chunk header is cut short")
        fourcc, length = chunk[:4], int.from_bytes(chunk[4:8], "little")
        if pos + 8 + length > riff_end:
            raise invalid(f"the {fourcc.decode('latin-1')!r} chunk runs past the end")
        if fourcc == b"VP8X":
            data = fileobj.read(10)
            if length < 10 or len(data) < 10:
                raise invalid("the extended header is too short")
            animated = bool(data[0] & 0x02)
            canvas = (
                1 + int.from_bytes(data[4:7], "little"),
                1 + int.from_bytes(data[7:10], "little"),
            )
        elif fourcc == b"VP8 ":
            data = fileobj.read(10)
            # A key frame (bit 0 of the frame tag clear), then the start code 9D 01 2A.
            if length < 10 or len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
                raise invalid("the lossy bitstream has no key frame header")
            still = (
                int.from_bytes(data[6:8], "little") & 0x3FFF,
                int.from_bytes(data[8:10], "little") & 0x3FFF,
            )
        elif fourcc == b"VP8L":
            data = fileobj.read(5)
            if length < 5 or len(data) < 5 or data[0] != 0x2F:
                raise invalid("the lossless bitstream has no signature")
            bits = int.from_bytes(data[1:5], "little")
            if bits >> 29:
                raise invalid("the lossless bitstream has an unknown version")
            still = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif fourcc == b"ANMF":
            frames = True
        elif fourcc == b"EXIF" and length <= _WEBP_EXIF_MAX:
            exif = fileobj.read(length)
        pos += 8 + length + (length & 1)  # chunks are padded to an even length
    fileobj.seek(0)
    if canvas is None and still is None:
        raise invalid("it holds no image")
    if animated and not frames:
        raise invalid("an animation without frames")
    if canvas is None and still is not None:
        canvas = still
    width, height = canvas
    if not width or not height:
        raise invalid("its size is zero")
    return width, height, exif


# --- the request's check ------------------------------------------------------------------------
def inspect(fileobj: IO[bytes], *, max_pixels: int) -> ImageInfo:
    """Check that the file is a whole image of an accepted type, without decoding a pixel.

    The header gives the type, the size and the orientation; the size is held to ``max_pixels``
    before anything else is read. Whether the file is whole is checked from its structure: a
    JPEG's markers up to its end marker, a PNG's chunk checksums up to IEND, a WebP's RIFF chunks.
    A HEIC's container is parsed by libheif and its coded body left to the worker. So an upload
    costs milliseconds and kilobytes whatever its pixel count, and a body that is damaged in a
    way only decoding shows is found by the worker, which marks the photo failed with the reason.
    Raises ImageRejected with the API's code: unsupported_type, image_too_large, invalid_image.
    """
    fileobj.seek(0)
    head = fileobj.read(32)
    fileobj.seek(0)
    if not head:
        raise ImageRejected("invalid_image", "The file is empty.")
    content_type = sniff_type(head)
    if content_type is None:
        raise ImageRejected(
            "unsupported_type", "Only JPEG, PNG, WebP and HEIC photos are accepted."
        )
    try:
        if content_type == "image/webp":
            width, height, raw_exif = _webp_header(fileobj)
            if width * height > max_pixels:
                raise _too_large(width, height, max_pixels)
            exif = _exif_from_bytes(raw_exif)
        else:
            # Image.open parses the header only; Pillow decodes pixels on load(), never here.
            image = Image.open(fileobj)
            width, height = image.size
            if width * height > max_pixels:
                raise _too_large(width, height, max_pixels)
            exif = _exif_from_header(image)
            if content_type == "image/png":
                fileobj.seek(0)
                # Every chunk's CRC, up to IEND, without inflating the pixels.
                Image.open(fileobj).verify()
            elif content_type == "image/jpeg" and not _jpeg_is_whole(fileobj):
                raise ImageRejected(
                    "invalid_image",
                    "The JPEG file is cut short: it has no end marker. Send it again.",
                )
        orientation = exif.get(EXIF_ORIENTATION, 1)
        taken_at = _taken_at(exif)
    except ImageRejected:
        raise
    except _BOMB as exc:
        raise _bomb(max_pixels) from exc
    except _UNREADABLE as exc:
        raise ImageRejected(
            "invalid_image", f"The file could not be read as an image ({exc.__class__.__name__})."
        ) from exc
    finally:
        fileobj.seek(0)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(content_type=content_type, width=width, height=height, taken_at=taken_at)


# --- decoding -----------------------------------------------------------------------------------
def _is_progressive_jpeg(image: Image.Image) -> bool:
    return image.format in ("JPEG", "MPO") and bool(
        image.info.get("progressive") or image.info.get("progression")
    )


def decode_upright(
    fileobj: IO[bytes],
    *,
    max_side: int | None = None,
    max_pixels: int | None = None,
    max_decoded_pixels: int | None = None,
) -> Image.Image:
    """Decode once, apply EXIF orientation and return an RGB image, holding as little as it can.

    - ``max_pixels``: the image's own limit, checked from the header before any pixel is decoded
      (ImageTooLarge, code ``image_too_large``).
    - ``max_side``: the long side the caller needs. A JPEG is decoded directly at the smallest
      power-of-two reduction whose long side is still at least ``max_side`` (libjpeg scales in
      the DCT domain): a 12 MP photo needed at 1600 px decodes at 2000x1500, several times
      faster and in a quarter of the memory. Pillow has no scaled decoder for the other formats:
      they are decoded whole, then reduced by an integer factor before being turned upright, so
      that at full size only the decoded image (and, for a mode other than RGB or grey, its RGB
      conversion) is ever held, never the copies that rotating and converting used to make.
    - ``max_decoded_pixels``: the most pixels the decoder may hold. A baseline JPEG drafted to
      ``max_side`` holds under (2 * max_side)^2, or 1/64 of its own for shapes beyond 16:1; a
      PNG, WebP or HEIC holds its full size, and so does a progressive JPEG (libjpeg keeps every
      coefficient of the whole image, whatever the output scale). Larger ones are refused
      (ImageTooLarge) before a pixel is decoded.

    A body that does not decode raises ImageUndecodable (``invalid_image``).
    """
    fileobj.seek(0)
    if sniff_type(fileobj.read(16)) == "image/webp":
        # libwebp allocates the whole canvas as Pillow opens the file: judge the header first.
        width, height, _ = _webp_header(fileobj)
        if max_pixels is not None and width * height > max_pixels:
            raise _too_large(width, height, max_pixels)
        if max_decoded_pixels is not None and width * height > max_decoded_pixels:
            raise _unscalable(width, height, "WebP", max_decoded_pixels)
    fileobj.seek(0)
    try:
        image = Image.open(fileobj)
    except _BOMB as exc:
        raise _bomb(max_pixels) from exc
    except _UNREADABLE as exc:
        raise ImageUndecodable(
            f"The file could not be read as an image ({exc.__class__.__name__}: {exc})."
        ) from exc
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise _too_large(width, height, max_pixels)
    if max_side is not None and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
    if max_decoded_pixels is not None:
        held = (width, height) if _is_progressive_jpeg(image) else image.size
        if held[0] * held[1] > max_decoded_pixels:
            kind = "progressive JPEG" if _is_progressive_jpeg(image) else image.format
            raise _unscalable(width, height, kind, max_decoded_pixels)
    try:
        image.load()
        if image.mode != "RGB" and image.mode != "L":
            image = image.convert("RGB")
        if max_side is not None and max(image.size) >= 2 * max_side:
            image = image.reduce(max(image.size) // max_side)
        ImageOps.exif_transpose(image, in_place=True)
    except (*_UNREADABLE, RuntimeError) as exc:
        raise ImageUndecodable(
            f"The image data could not be decoded: it is damaged or cut short "
            f"({exc.__class__.__name__}: {exc})."
        ) from exc
    return image if image.mode == "RGB" else image.convert("RGB")


def resized(image: Image.Image, max_side: int) -> Image.Image:
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(
        size, Image.Resampling.LANCZOS if max_side <= 600 else Image.Resampling.BILINEAR
    )


def encode(image: Image.Image, fmt: str, *, quality: int) -> bytes:
    """Re-encode with no metadata at all: no EXIF, so no GPS location leaves the server."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=quality, optimize=fmt == "JPEG")
    return buffer.getvalue()


def average_colour(image: Image.Image) -> str:
    r, g, b = image.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return f"#{r:02x}{g:02x}{b:02x}"
