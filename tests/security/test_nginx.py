"""deploy/ as an operator runs it: Debian's nginx in front of gunicorn, both on loopback.

The slow-body attack (10 connections trickling a POST body one byte every 2 s) stalled every
gunicorn worker for 25 s when gunicorn faced clients itself. Behind deploy/nginx/findme-app.conf
nginx holds those connections and gunicorn never sees them: /api/health/ keeps answering.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(300)]

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))

SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from django.core.files.base import ContentFile
from events.models import Event
from photos.models import Photo
import hashlib, json
with open(ORIGINAL, "rb") as fh:
    data = fh.read()
staff = get_user_model().objects.create_user("staff", password="pw-" + "x" * 20, is_staff=True)
token = Token.objects.create(user=staff)
event = Event.objects.create(name="Gala", slug="gala", created_by=staff, keep_location=True)
sha = hashlib.sha256(data).hexdigest()
photo = Photo(event=event, sha256=sha, original_name="gala.jpg", content_type="image/jpeg",
              size=len(data), width=8, height=8, status="done")
photo.original.save("ignored.jpg", ContentFile(data), save=False)
photo.save()
print(json.dumps({"token": token.key, "photo": photo.pk, "stored": photo.original.name}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on {port}:\n{log.read_text()[-3000:]}")


def render_nginx(tmp: Path, *, listen: int, upstream: int, media: Path) -> Path:
    app = (ROOT / "deploy" / "nginx" / "findme-app.conf").read_text()
    assert "alias /srv/findme/media/;" in app
    app = app.replace("alias /srv/findme/media/;", f"alias {media}/;")
    (tmp / "findme-app.conf").write_text(app)
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / name).mkdir()
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream findme_app {{
        server 127.0.0.1:{upstream} fail_timeout=0;
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{listen};
        server_name localhost;
        include {tmp}/findme-app.conf;
    }}
}}
"""
    )
    return conf


@dataclass
class Stack:
    nginx_port: int
    gunicorn_port: int
    gthread_port: int  # the same gunicorn with threads (gthread, keep-alive), as `make run` runs it
    token: str
    photo_id: int
    original: bytes
    static_root: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if NGINX is None:
        pytest.skip(
            "nginx is not installed and could not be: `make nginx` installs it as root on Debian"
        )
    tmp = tmp_path_factory.mktemp("deploy")
    media, static_root = tmp / "media", tmp / "static"
    media.mkdir()
    original = (ROOT / "static" / "favicon.svg").read_bytes()  # any bytes: served untouched
    (tmp / "original.bin").write_bytes(original)
    gunicorn_port, nginx_port, gthread_port = free_port(), free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "DJANGO_", "AWS_", "GUNICORN_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        # Loopback has no TLS: everything else is production's default.
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_TRUST_X_FORWARDED_PROTO="1",
        DJANGO_STATIC_ROOT=str(static_root),
        SQLITE_PATH=str(tmp / "db.sqlite3"),
        MEDIA_ROOT=str(media),
        SERVE_ORIGINALS_VIA_ACCEL_REDIRECT="1",
        GUNICORN_BIND=f"127.0.0.1:{gunicorn_port}",
        WEB_CONCURRENCY="2",
        GUNICORN_ACCESS_LOG="",
        Q_CLUSTER_NAME=f"nginx-test-{os.getpid()}",
    )
    manage = [sys.executable, "manage.py"]
    for step in (["migrate", "--noinput"], ["createcachetable"], ["collectstatic", "--noinput"]):
        done = subprocess.run(
            manage + step, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        manage + ["shell", "-c", f"ORIGINAL = {str(tmp / 'original.bin')!r}\n{SETUP}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout.strip().splitlines()[-1])

    gunicorn_log = tmp / "gunicorn.log"
    with gunicorn_log.open("w") as log:
        gunicorn = subprocess.Popen(
            [GUNICORN, "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    gthread_log = tmp / "gthread.log"
    with gthread_log.open("w") as log:
        gthread = subprocess.Popen(
            [GUNICORN, "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env={
                **env,
                "GUNICORN_BIND": f"127.0.0.1:{gthread_port}",
                "WEB_CONCURRENCY": "1",
                "GUNICORN_THREADS": "4",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    nginx_dir = tmp / "nginx"
    nginx_dir.mkdir()
    conf = render_nginx(nginx_dir, listen=nginx_port, upstream=gunicorn_port, media=media)
    test = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(nginx_dir)], capture_output=True, text=True
    )
    assert test.returncode == 0, test.stderr
    nginx_log = nginx_dir / "stderr.log"
    with nginx_log.open("w") as log:
        nginx = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(nginx_dir)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(gunicorn_port, gunicorn, gunicorn_log)
        wait_for_port(nginx_port, nginx, nginx_log)
        wait_for_port(gthread_port, gthread, gthread_log)
        yield Stack(
            nginx_port,
            gunicorn_port,
            gthread_port,
            made["token"],
            made["photo"],
            original,
            static_root,
        )
    finally:
        for process in (nginx, gunicorn, gthread):
            process.terminate()
        for process in (nginx, gunicorn, gthread):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "localhost", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def trickle(port: int, stop: threading.Event, opened: list[socket.socket]) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened.append(sock)
    sock.sendall(
        b"POST /api/auth/token/ HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    while not stop.wait(2.0):
        try:
            sock.sendall(b" ")
        except OSError:
            return


def test_health_answers_within_a_second_while_ten_clients_trickle_their_bodies(stack):
    stop, opened = threading.Event(), []
    attackers = [
        threading.Thread(target=trickle, args=(stack.nginx_port, stop, opened), daemon=True)
        for _ in range(10)
    ]
    for thread in attackers:
        thread.start()
    latencies, statuses = [], []
    try:
        time.sleep(1)  # every attacker connected and trickling
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status, _, _ = get(stack.nginx_port, "/api/health/", timeout=5)
            except OSError:
                status = None
            latencies.append(time.monotonic() - started)
            statuses.append(status)
            time.sleep(0.2)
        assert len(opened) == 10
    finally:
        stop.set()
        for sock in opened:
            sock.close()
    slowest_at = latencies.index(max(latencies))
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(
        f"health during the slow-body attack: {len(latencies)} probes, p95 {p95 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms (probe {slowest_at + 1})"
    )
    assert statuses == [200] * len(statuses)
    assert p95 < 1.0


def test_an_authorised_original_is_sent_by_nginx_with_its_bytes_and_headers(stack):
    status, headers, body = get(
        stack.nginx_port,
        f"/api/photos/{stack.photo_id}/original/",
        {"Authorization": f"Token {stack.token}"},
    )
    assert status == 200, body[:300]
    assert body == stack.original
    assert hashlib.sha256(body).digest() == hashlib.sha256(stack.original).digest()
    assert headers["Content-Type"] == "image/jpeg"
    # Named as every download is (photos/naming.py): event, upload time (no EXIF here), id.
    assert re.fullmatch(
        rf'attachment; filename="gala-\d{{8}}-\d{{4}}-{stack.photo_id}\.jpg"',
        headers["Content-Disposition"],
    )
    assert headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert "X-Accel-Redirect" not in headers
    assert headers["Server"].startswith("nginx")


def test_the_internal_location_and_an_anonymous_request_get_nothing(stack):
    status, _, body = get(stack.nginx_port, f"/api/photos/{stack.photo_id}/original/")
    # Django refuses (404: existence is not revealed), so nginx never sends the file.
    assert status in (401, 404)
    assert json.loads(body)["error"]["code"]
    direct, _, _ = get(stack.nginx_port, "/internal/originals/")
    assert direct == 404


def test_hashed_static_files_are_cached_for_years(stack):
    manifest = json.loads((stack.static_root / "staticfiles.json").read_text())
    hashed = manifest["paths"]["css/findme.css"]
    assert re.fullmatch(r"css/findme\.[0-9a-f]{12}\.css", hashed)
    status, headers, _ = get(stack.nginx_port, f"/static/{hashed}")
    assert status == 200
    assert "immutable" in headers["Cache-Control"]
    assert int(re.search(r"max-age=(\d+)", headers["Cache-Control"]).group(1)) >= 31_536_000
    page_status, _, page = get(stack.nginx_port, "/accounts/login/")
    assert page_status == 200
    assert f"/static/{hashed}".encode() in page


def test_a_body_over_nginx_s_limit_is_refused_in_the_error_shape(stack):
    with socket.create_connection(("127.0.0.1", stack.nginx_port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/events/gala/photos/ HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 60000000\r\n\r\n"
        )
        answer = sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"]["code"] == "file_too_large"


TOO_BIG_FORM_HEAD = (
    b"POST /api/auth/token/ HTTP/1.1\r\nHost: localhost\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 6000000\r\n\r\n"
)


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_gunicorn_closes_the_connection_after_refusing_an_unread_body(stack, worker):
    """Straight at gunicorn: Django refuses a 6 MB form before reading it, and says so. With
    threads, gunicorn keeps connections alive by default: the answer must still say close,
    and the server must then close, even though the client never sends the rest."""
    port = stack.gunicorn_port if worker == "sync" else stack.gthread_port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(TOO_BIG_FORM_HEAD + b"username=x")
        answer = read_until_closed(sock)  # a server that kept the connection open times out here
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"\r\nConnection: close" in head
    assert b"keep-alive" not in head.lower()
    assert json.loads(body)["error"]["code"] == "request_too_large"


def test_a_client_still_sending_the_refused_body_gets_the_whole_answer(stack):
    """The client sends all 6 MB while the answer is already out: the server reads and drops
    the rest before closing, so no reset destroys the answer in the client's buffers."""
    with socket.create_connection(("127.0.0.1", stack.gthread_port), timeout=10) as sock:
        sent: list[BaseException] = []

        def send_all() -> None:
            try:
                sock.sendall(TOO_BIG_FORM_HEAD + b"u" * 6_000_000)
            except OSError as error:
                sent.append(error)

        sender = threading.Thread(target=send_all)
        sender.start()
        answer = read_until_closed(sock)
        sender.join(timeout=30)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"\r\nConnection: close" in head
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert sent == []  # the whole body was taken, none of it refused with a reset


def test_with_no_gunicorn_the_api_answers_503_in_the_error_shape(stack, tmp_path):
    """A second nginx on the same configuration whose upstream port has nothing behind it."""
    port = free_port()
    conf = render_nginx(tmp_path, listen=port, upstream=free_port(), media=tmp_path)
    log = tmp_path / "stderr.log"
    with log.open("w") as out:
        nginx = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(tmp_path)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, nginx, log)
        status, headers, body = get(port, "/api/health/")
        assert status == 503
        assert headers["Retry-After"] == "10"
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "unavailable"
        page_status, page_headers, _ = get(port, "/accounts/login/")
        assert page_status == 502
        assert page_headers["Content-Type"].startswith("text/html")
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)
