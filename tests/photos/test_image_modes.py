"""Every kind of image a camera, a phone or an editor saves becomes an RGB thumbnail (WebP) and
preview (JPEG) of the right size and colour: CMYK and grey JPEGs, progressive JPEGs, PNGs with
alpha, a palette, 16-bit grey or 1 bit, WebP with alpha, HEIC, and extreme shapes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from photos.models import Photo, Rendition
from photos.services import photo_ingest, photo_process
from tests.conftest import uploaded

pytestmark = pytest.mark.django_db

COLOUR = (200, 100, 50)


def saved(mode: str, fmt: str, size=(640, 480), **options) -> bytes:
    if mode == "I;16":
        image = Image.new("I;16", size, 30_000)
    else:
        image = Image.new("RGB", size, COLOUR).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def heic() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return saved("RGB", "HEIF")


CASES = {
    "cmyk-jpeg": (lambda: saved("CMYK", "JPEG"), "image/jpeg", (400, 300), COLOUR),
    "grey-jpeg": (lambda: saved("L", "JPEG"), "image/jpeg", (400, 300), "grey"),
    "progressive-jpeg": (
        lambda: saved("RGB", "JPEG", progressive=True),
        "image/jpeg",
        (400, 300),
        COLOUR,
    ),
    "rgba-png": (lambda: saved("RGBA", "PNG"), "image/png", (400, 300), COLOUR),
    "palette-png": (lambda: saved("P", "PNG"), "image/png", (400, 300), None),
    "grey-alpha-png": (lambda: saved("LA", "PNG"), "image/png", (400, 300), "grey"),
    "16-bit-grey-png": (lambda: saved("I;16", "PNG"), "image/png", (400, 300), None),
    "1-bit-png": (lambda: saved("1", "PNG"), "image/png", (400, 300), None),
    "rgba-webp": (lambda: saved("RGBA", "WEBP"), "image/webp", (400, 300), COLOUR),
    "heic": (heic, "image/heic", (400, 300), COLOUR),
    "one-pixel-jpeg": (lambda: saved("RGB", "JPEG", size=(1, 1)), "image/jpeg", (1, 1), COLOUR),
    "20x3000-jpeg": (lambda: saved("RGB", "JPEG", size=(20, 3000)), "image/jpeg", (3, 400), None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_kind_of_image_gets_an_rgb_thumbnail_and_preview(name, event):
    make, content_type, thumb_size, colour = CASES[name]
    photo = photo_ingest(event=event, upload=uploaded(name, make()), uploaded_by=None).photo
    assert photo.content_type == content_type

    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    photo.refresh_from_db()
    assert (photo.status, photo.error) == (Photo.Status.DONE, "")

    rendition = Rendition.objects.get(photo=photo)
    thumb = Image.open(io.BytesIO(bytes(rendition.thumb)))
    preview = Image.open(io.BytesIO(bytes(rendition.preview)))
    assert (thumb.format, thumb.mode, thumb.size) == ("WEBP", "RGB", thumb_size)
    assert (preview.format, preview.mode) == ("JPEG", "RGB")
    assert max(preview.size) == min(1600, max(photo.width, photo.height))

    if colour is not None:
        centre = thumb.getpixel((thumb.width // 2, thumb.height // 2))
        if colour == "grey":
            grey = Image.new("RGB", (1, 1), COLOUR).convert("L").getpixel((0, 0))
            colour = (grey, grey, grey)
        assert all(abs(a - b) <= 12 for a, b in zip(centre, colour, strict=True)), (centre, colour)
