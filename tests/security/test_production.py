"""Production mode: `check --deploy` is clean, and every answer carries the security headers."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import pytest
from django.test import Client, override_settings

from tests.conftest import ROOT

# The parent's DJANGO_* variables (set by config/settings_test.py) must not leak into a process
# that is meant to see production's own defaults.
CLEAN = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("DATABASE_URL", "REDIS_URL", "DJANGO_", "AWS_"))
}


def run_production(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={
            **CLEAN,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_nothing_in_production_mode():
    done = run_production("manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


def test_check_deploy_names_each_protection_an_operator_turns_off():
    done = run_production(
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_SECURE_COOKIES="0",
        DJANGO_SECURE_HSTS_SECONDS="0",
    )
    assert done.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in done.stderr + done.stdout


PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "proxy": settings.SECURE_PROXY_SSL_HEADER,
    "static": settings.STORAGES["staticfiles"]["BACKEND"],
    "finders": settings.WHITENOISE_USE_FINDERS,
    "hsts": settings.SECURE_HSTS_SECONDS,
}))
"""


def test_proxy_header_is_trusted_only_when_the_operator_says_so():
    import json

    plain = run_production("-c", PROBE)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["proxy"] is None
    behind = run_production("-c", PROBE, DJANGO_TRUST_X_FORWARDED_PROTO="1")
    assert json.loads(behind.stdout)["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_production_serves_hashed_static_files_and_development_does_not():
    import json

    production = json.loads(run_production("-c", PROBE).stdout)
    assert production["static"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert production["finders"] is False
    assert production["hsts"] == 31_536_000
    development = json.loads(run_production("-c", PROBE, DJANGO_DEBUG="1").stdout)
    assert development["static"] == "django.contrib.staticfiles.storage.StaticFilesStorage"
    assert development["hsts"] == 0


@pytest.mark.django_db
def test_pages_carry_csp_referrer_nosniff_and_a_camera_free_permissions_policy():
    page = Client().get("/accounts/login/")
    assert page.status_code == 200
    csp = page["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page["Referrer-Policy"] == "same-origin"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert "camera=()" in page["Permissions-Policy"]
    assert "geolocation=()" in page["Permissions-Policy"]


@pytest.mark.django_db
def test_only_the_selfie_page_may_use_the_camera(attendee):
    client = Client()
    client.force_login(attendee)
    selfie = client.get("/me/selfie/")
    assert selfie.status_code == 200
    assert "camera=(self)" in selfie["Permissions-Policy"]
    assert "microphone=()" in selfie["Permissions-Policy"]
    gallery = client.get("/my/")
    assert "camera=()" in gallery["Permissions-Policy"]


@pytest.mark.django_db
@override_settings(
    SECURE_SSL_REDIRECT=True,
    SECURE_HSTS_SECONDS=31_536_000,
    SECURE_HSTS_INCLUDE_SUBDOMAINS=True,
    SECURE_HSTS_PRELOAD=True,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
)
def test_behind_the_proxy_http_is_redirected_and_https_gets_hsts():
    client = Client()
    plain = client.get("/api/health/")
    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/api/health/"
    secure = client.get("/api/health/", headers={"x-forwarded-proto": "https"})
    assert secure.status_code in (200, 503)
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_templates_hold_no_inline_script_or_style():
    """The CSP allows neither: an inline block or attribute would silently stop working."""
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>")
    offenders = []
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        if inline_script.search(text) or "<style" in text or re.search(r"\sstyle=", text):
            offenders.append(str(template.relative_to(ROOT)))
        if re.search(r"\son[a-z]+=\"", text):
            offenders.append(f"{template.relative_to(ROOT)} (event handler attribute)")
    assert offenders == []


@pytest.fixture
def chromium():
    from tests.browser import CHROMIUM, CHROMIUM_FLAGS

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM calls between browser steps
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_no_page_breaks_the_content_security_policy(chromium, live_server, django_user_model):
    """Chromium reports every script, style or image the CSP refuses: there must be none."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    from accounts.models import Selfie
    from accounts.services import selfie_store
    from events.models import Event
    from tests.conftest import jpeg_bytes
    from tests.pages.conftest import join, match_make, photo_make

    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-long-1234")
    member = django_user_model.objects.create_user("ann", "ann@example.com", "pw-long-1234")
    event = Event.objects.create(name="Wedding", slug="wedding", created_by=staff)
    join(member, event)
    selfie_store(user=member, upload=SimpleUploadedFile("s.jpg", jpeg_bytes()))
    Selfie.objects.filter(user=member).update(status="indexed", indexed_at=timezone.now())
    match_make(photo_make(event), member)

    pages = {
        member: ["/my/", "/me/selfie/"],
        staff: ["/admin/", "/admin/queue/", "/e/wedding/qr/", "/api/docs/"],
    }
    refused: list[str] = []
    anonymous = chromium.new_context(base_url=live_server.url)
    visits = [(anonymous, "/accounts/login/"), (anonymous, "/accounts/signup/")]
    for user, paths in pages.items():
        client = Client()
        client.force_login(user)
        context = chromium.new_context(base_url=live_server.url)
        context.add_cookies(
            [
                {
                    "name": "sessionid",
                    "value": client.cookies["sessionid"].value,
                    "url": live_server.url,
                }
            ]
        )
        visits += [(context, path) for path in paths]
    for context, path in visits:
        page = context.new_page()
        page.on(
            "console",
            lambda message, path=path: (
                refused.append(f"{path}: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )
        answer = page.goto(path, wait_until="networkidle")
        assert answer.status == 200, path
        assert "Content-Security-Policy" in {h.title() for h in answer.headers}
        page.close()
    assert refused == []
