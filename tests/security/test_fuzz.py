"""schemathesis against a live server, once with a staff token and once with an attendee's.

A real gunicorn on a free port, production settings, a throwaway SQLite database and media
folder. schemathesis reads /api/schema/ and sends every operation a bounded number of generated
requests, valid and invalid: no answer may be a 5xx, and each must keep to the schema (status
code declared, content type declared, body as described).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.servers import free_port, production_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)
EXAMPLES_PER_OPERATION = 12

# Two events, a staff user, an attendee with a processed photo they are matched in, and a
# member of the other event; prints the staff and attendee tokens.
SEED = """
import io
from PIL import Image
from django.core.files.base import ContentFile
from rest_framework.authtoken.models import Token
from accounts.models import User
from events.models import Event, Membership
from faces.models import Match
from photos.models import Photo, Rendition

staff = User.objects.create_user("staff", password="staff-pass-123", is_staff=True)
ann = User.objects.create_user("ann", password="ann-pass-1234")
bob = User.objects.create_user("bob", password="bob-pass-1234")
wedding = Event.objects.create(name="Wedding", slug="wedding", created_by=staff)
race = Event.objects.create(name="Race", slug="race", created_by=staff)
Membership.objects.create(user=ann, event=wedding)
Membership.objects.create(user=bob, event=race)
buffer = io.BytesIO()
Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "JPEG")
data = buffer.getvalue()
photo = Photo(event=wedding, sha256="a" * 64, content_type="image/jpeg", size=len(data),
              status=Photo.Status.DONE, face_count=1, original_name="IMG_1.JPG")
photo.original.save("x.jpg", ContentFile(data), save=False)
photo.save()
Rendition.objects.create(photo=photo, thumb=data, preview=data)
Match.objects.create(photo=photo, event=wedding, user=ann, distance=0.3)
print(Token.objects.create(user=staff).key, Token.objects.create(user=ann).key)
"""


def _environment(tmp: Path) -> dict[str, str]:
    # A throwaway SQLite database and the database cache, whatever the suite runs on.
    return production_env(
        DJANGO_SECRET_KEY="fuzz-only-secret-key",
        SQLITE_PATH=str(tmp / "db.sqlite3"),
        MEDIA_ROOT=str(tmp / "media"),
    )


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    env = _environment(tmp)
    _manage(env, "migrate", "--noinput", "--verbosity", "0")
    _manage(env, "createcachetable")
    # The last line: anything logged before it is not ours to parse.
    staff_token, attendee_token = _manage(env, "shell", "-c", SEED).splitlines()[-1].split()
    port = free_port()
    log = (tmp / "gunicorn.log").open("w")
    server = subprocess.Popen(  # noqa: S603
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/api/health/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(answers, timeout=60, what="gunicorn")
        yield url, {"staff": staff_token, "attendee": attendee_token}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        errors = [
            line
            for line in (tmp / "gunicorn.log").read_text().splitlines()
            if "Traceback" in line or " ERROR " in line
        ]
        print("\n".join(errors[:50]))
        shutil.rmtree(tmp / "media", ignore_errors=True)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("who", ["staff", "attendee"])
def test_fuzzing_finds_no_server_error_and_no_schema_violation(live, who, tmp_path):
    url, tokens = live
    done = subprocess.run(  # noqa: S603
        [
            str(SCHEMATHESIS),
            "run",
            f"{url}/api/schema/?format=json",
            "--url",
            url,
            "--header",
            f"Authorization: Token {tokens[who]}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "11",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    report = done.stdout[-20000:] + done.stderr[-5000:]
    assert done.returncode == 0, report
    # And it did test: every operation, every generated case passed.
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", done.stdout)
    assert selected, report
    assert selected[1] == selected[2] == selected[3] and int(selected[3]) >= 20, report
    cases = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert cases, report
    assert cases[1] == cases[2] and int(cases[1]) > 20 * EXAMPLES_PER_OPERATION, report
