"""Create the demo staff user, the demo event and a folder of sample photos, and print how to
try FindMe with them."""

import io
import os
import random
import shlex
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from PIL import Image, ImageDraw
from rest_framework.authtoken.models import Token

from events.models import Event
from watcher.folder import IMAGE_SUFFIXES
from watcher.manifest import FILENAME as WATCHER_MANIFEST

SAMPLE_PHOTOS = 6
SAMPLE_SIZE = (1200, 800)
# When the samples say they were taken (EXIF DateTimeOriginal, which has no time zone): one
# every 17 minutes from 15:00 on the day of the demo event.
SAMPLE_DAY = "2026:06:20"
SAMPLE_EVERY_MIN = 17
EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 0x9003


def sample_jpeg(index: int) -> bytes:
    """A small drawn scene (sky, sun, hills, bunting, balloons), the same bytes on every run."""
    rng = random.Random(index)
    width, height = SAMPLE_SIZE
    image = Image.new("RGB", SAMPLE_SIZE)
    draw = ImageDraw.Draw(image)
    top = (rng.randrange(60, 140), rng.randrange(120, 190), 235)
    bottom = (250, rng.randrange(200, 240), rng.randrange(150, 210))
    for y in range(height):
        t = y / height
        draw.line(
            [(0, y), (width, y)],
            fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    sun_x, sun_y = rng.randrange(150, width - 150), rng.randrange(90, 260)
    draw.ellipse([sun_x - 70, sun_y - 70, sun_x + 70, sun_y + 70], fill=(255, 214, 90))
    for layer in (2, 1, 0):  # the farthest hills first, paler, the nearer drawn over them
        base = height - 120 - layer * 90
        green = (50 + 40 * layer, 130 + 30 * layer, 60 + 50 * layer)
        points = [(0, height)]
        for x in range(0, width + 100, 100):
            points.append((x, base - rng.randrange(0, 120)))
        points.append((width, height))
        draw.polygon(points, fill=green)
    # Bunting across the top, then balloons on strings.
    for x in range(0, width, 60):
        colour = (rng.randrange(150, 256), rng.randrange(40, 200), rng.randrange(40, 200))
        draw.polygon([(x, 20), (x + 50, 20), (x + 25, 70)], fill=colour)
    for _ in range(rng.randrange(3, 7)):
        bx, by = rng.randrange(80, width - 80), rng.randrange(250, height - 300)
        colour = (rng.randrange(100, 256), rng.randrange(0, 256), rng.randrange(0, 256))
        draw.line(
            [(bx, by + 60), (bx + rng.randrange(-30, 30), by + 260)], fill=(80, 80, 80), width=2
        )
        draw.ellipse([bx - 45, by - 60, bx + 45, by + 60], fill=colour, outline=(60, 60, 60))
    exif = Image.Exif()
    minutes = 15 * 60 + SAMPLE_EVERY_MIN * index
    exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = (
        f"{SAMPLE_DAY} {minutes // 60:02d}:{minutes % 60:02d}:00"
    )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, exif=exif)
    return buffer.getvalue()


def example_photos_fill(folder: Path) -> int:
    """Put the sample photos into ``folder`` unless it already holds photos; how many it holds."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if existing:
        return len(existing)
    for index in range(SAMPLE_PHOTOS):
        (folder / f"sample-{index + 1:02d}.jpg").write_bytes(sample_jpeg(index))
    return SAMPLE_PHOTOS


def manifest_forget(folder: Path) -> None:
    """A new demo event (a fresh database) means the folder's manifest describes photos of an
    event that is gone: without this the watcher would think them uploaded and send nothing."""
    for suffix in ("", "-wal", "-shm"):
        (folder / f"{WATCHER_MANIFEST}{suffix}").unlink(missing_ok=True)


def token_file_write(path: Path, token: str) -> None:
    """The token in a file only its owner can read: the watcher reads it with --token-file, so
    the token never appears in the process list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)  # an older file keeps its mode through O_CREAT
        fh.write(f"{token}\n")


def shown(path: Path) -> str:
    """``path`` as the user can type it from where they ran the command."""
    try:
        return f"./{path.resolve().relative_to(Path.cwd().resolve()).as_posix()}"
    except ValueError:
        return str(path)


class Command(BaseCommand):
    help = (
        "Create a demo staff user, a demo event and a folder of sample photos (only what is"
        " absent), write the staff token to a file, and print how to try FindMe."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="findme-demo")
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument(
            "--photos-dir",
            type=Path,
            default=settings.BASE_DIR / "example-photos",
            help="the folder of sample photos for the watcher (git-ignored)",
        )
        parser.add_argument(
            "--token-file",
            type=Path,
            default=settings.BASE_DIR / ".findme-token",
            help="where to write the staff token, readable by its owner alone (git-ignored)",
        )

    def handle(self, *args, **options) -> None:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=options["username"],
            defaults={"is_staff": True, "is_superuser": True, "email": "demo@findme.local"},
        )
        if created:
            user.set_password(options["password"])
            user.save()
        token, _ = Token.objects.get_or_create(user=user)
        event, event_created = Event.objects.get_or_create(
            slug="demo", defaults={"name": "Demo event", "created_by": user}
        )
        photos_dir: Path = options["photos_dir"]
        token_file: Path = options["token_file"]
        count = example_photos_fill(photos_dir)
        if event_created:
            manifest_forget(photos_dir)
        token_file_write(token_file, token.key)

        url = options["url"].rstrip("/")
        password = options["password"] if created else "(unchanged since it was created)"
        folder, key_file = shlex.quote(shown(photos_dir)), shlex.quote(shown(token_file))
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "FindMe is running.",
                    f"  Open:        {url}/",
                    f"  Admin:       {url}/admin/   (user {user.username}, password {password})",
                    f"  Join link:   {url}{event.join_path}",
                    f"  Staff token: in {key_file} (readable by you alone)",
                    f"  Photos:      {folder}/ holds {count} photos; drop more in while the"
                    " watcher runs",
                    f"  Watcher:     .venv/bin/python -m watcher {folder} --server {url} "
                    f"--event {event.slug} --token-file {key_file}",
                    "  Stop with Ctrl-C.",
                    "",
                ]
            )
        )
