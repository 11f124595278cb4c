"""What a selfie costs the web process: the bounded path against the old full decode.

    .venv/bin/python bench/selfie_bounds.py [--repeat 3]

Three files, each measured in a fresh child process (so that one run's memory cannot hide
another's), the two paths alternating, ``--repeat`` times each:

- the tester's file: a 1-bit PNG of 10000x10000 in 12 KB. The bounded path is the service
  itself, ``faces.services.selfie_register``, which refuses it from its header
  (image_too_large);
- a 48 MP baseline JPEG (a phone's full-resolution frame), decoded as selfie_register decodes
  it: ``decode_upright`` drafted near 2048 px;
- a 12 MP HEIC (an iPhone selfie), which Pillow cannot decode at a reduced scale: the bounded
  path decodes it whole but makes no second full-size copy.

The old path is what the web process did before: ``Image.open(...).convert("RGB")`` of the same
file. Each child reports wall time and the growth of its RSS over the step (sampled every 2 ms).
The last line is the ratio for the tester's file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# What selfie_register passes to decode_upright (faces/services/members.py).
SELFIE_SIDE = 2048


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def blank_png(width: int, height: int) -> bytes:
    """A real 1-bit PNG, written row by row: 10000x10000 is 12 KB."""
    row = bytes(1 + (width + 7) // 8)
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def photo_like(width: int, height: int, fmt: str, **options) -> bytes:
    """A smooth gradient with sensor-like noise: compresses like a photo, not like a blank."""
    import numpy as np
    from PIL import Image

    x = np.linspace(0, 1, width, dtype=np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = 60 + 120 * x
    pixels[..., 1] = 90 + 80 * y
    pixels[..., 2] = 140 - 60 * x * y
    # Noise from one 512x512 tile (0-12 added to channels that stay under 190): a 48 MP frame
    # is made in a few hundred MB rather than gigabytes of float noise.
    tile = np.random.default_rng(7).integers(0, 13, (512, 512, 3), dtype=np.uint8)
    for top in range(0, height, 512):
        for left in range(0, width, 512):
            block = pixels[top : top + 512, left : left + 512]
            block += tile[: block.shape[0], : block.shape[1]]
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, fmt, **options)
    return buffer.getvalue()


def make_files(folder: Path) -> dict[str, Path]:
    import pillow_heif

    pillow_heif.register_heif_opener()
    files = {
        "png-10000x10000-1bit": (blank_png, (10000, 10000)),
        "jpeg-8064x6048": (
            lambda w, h: photo_like(w, h, "JPEG", quality=90),
            (8064, 6048),
        ),
        "heic-4032x3024": (
            lambda w, h: photo_like(w, h, "HEIF", quality=60, enc_params={"preset": "ultrafast"}),
            (4032, 3024),
        ),
    }
    paths = {}
    for name, (make, size) in files.items():
        path = folder / name
        path.write_bytes(make(*size))
        paths[name] = path
    return paths


# --- one measurement, in a child process --------------------------------------------------------
def child(path: Path, variant: str, case: str) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django

    django.setup()
    import psutil
    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    from core.errors import ApplicationError
    from core.imaging import decode_upright
    from faces.services import selfie_register

    data = path.read_bytes()
    process = psutil.Process()
    peak = [process.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)

    outcome = "decoded"
    before = process.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    if variant == "full":
        Image.MAX_IMAGE_PIXELS = None  # the old process-wide setting
        image = Image.open(io.BytesIO(data)).convert("RGB")
        size = image.size
    elif case.startswith("png"):
        try:
            selfie_register(user=None, upload=SimpleUploadedFile("me.png", data), consent="true")
        except ApplicationError as refused:
            outcome = refused.code
        size = None
    else:
        image = decode_upright(
            io.BytesIO(data),
            max_side=SELFIE_SIDE,
            max_pixels=settings.SELFIE_MAX_PIXELS,
            max_decoded_pixels=(2 * SELFIE_SIDE) ** 2,
        )
        size = image.size
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return {
        "seconds": elapsed,
        "rss_growth_mb": (peak[0] - before) / 2**20,
        "outcome": outcome,
        "size": size,
    }


def measure(path: Path, variant: str, case: str) -> dict:
    answer = subprocess.run(
        [sys.executable, __file__, "--child", str(path), variant, case],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, variant, case = args.child
        print(json.dumps(child(Path(path), variant, case)))
        return

    with tempfile.TemporaryDirectory(prefix="findme-selfie-bounds-") as folder:
        print("making the files ...", flush=True)
        files = make_files(Path(folder))
        results: dict[tuple[str, str], list[dict]] = {}
        for case, path in files.items():
            size_kb = path.stat().st_size / 1024
            for round_ in range(args.repeat):
                # Alternate which path goes first, so that neither always meets a warmer cache.
                order = ("bounded", "full") if round_ % 2 == 0 else ("full", "bounded")
                for variant in order:
                    results.setdefault((case, variant), []).append(measure(path, variant, case))
            print(f"\n{case} ({size_kb:,.0f} KB)")
            for variant in ("bounded", "full"):
                runs = results[(case, variant)]
                seconds = statistics.median(r["seconds"] for r in runs)
                growth = max(r["rss_growth_mb"] for r in runs)
                outcome = runs[0]["outcome"]
                size = runs[0]["size"]
                shown = f"{size[0]}x{size[1]}" if size else "-"
                print(
                    f"  {variant:8} {seconds * 1000:9.1f} ms (median of {len(runs)})"
                    f"  peak RSS growth {growth:7.1f} MB  {outcome}, image {shown}"
                )

    case = "png-10000x10000-1bit"
    bounded, full = results[(case, "bounded")], results[(case, "full")]
    time_ratio = statistics.median(r["seconds"] for r in full) / statistics.median(
        r["seconds"] for r in bounded
    )
    print(
        f"\nratio full decode / bounded, {case} selfie: time {time_ratio:,.0f}x; "
        f"peak RSS growth {max(r['rss_growth_mb'] for r in full):,.0f} MB vs "
        f"{max(r['rss_growth_mb'] for r in bounded):.1f} MB"
    )


if __name__ == "__main__":
    main()
