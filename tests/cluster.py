"""Start a real django-q2 cluster (``manage.py qcluster``) against the test database."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from tests.conftest import ROOT


def cluster_env(**extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings_test"
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["FINDME_TEST_RUN_ID"] = settings.RUN_ID  # same queue name, same media, same database
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = str(db["NAME"])
        env.pop("DATABASE_URL", None)
    else:
        auth = quote(db["USER"] or "")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"])
        env["DATABASE_URL"] = (
            f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env.update(extra)
    return env


# The migrations that create django-q2 schedules, as a deployment has them.
SCHEDULE_MIGRATIONS = [
    ("photos", "0005_job_sweep_schedule"),
    ("photos", "0006_event_files_sweep_schedule"),
    ("photos", "0008_job_sweep_twice_a_minute"),
    ("faces", "0003_rematch_sweep_schedule"),
    ("faces", "0004_photo_vectors_sweep_schedule"),
]


def schedules_ensure() -> None:
    """Transactional tests empty every table after each test, the schedules the migrations made
    included: a cluster started later would run no periodic sweep, unlike any deployment."""
    from django.apps import apps

    for app, name in SCHEDULE_MIGRATIONS:
        importlib.import_module(f"{app}.migrations.{name}").schedule_create(apps, None)


@contextlib.contextmanager
def running_cluster(workers: int = 2, **extra_env: str) -> Iterator[subprocess.Popen]:
    schedules_ensure()
    log = tempfile.NamedTemporaryFile(prefix="qcluster-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=cluster_env(PHOTO_QUEUE_WORKERS=str(workers), **extra_env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.log_path = log.name
    try:
        yield proc
    finally:
        # The cluster's main process stops its workers itself; a SIGTERM to every process of
        # the group at once leaves it waiting forever for children that already died.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        log.close()


def cluster_log(proc: subprocess.Popen, *, whole: bool = False) -> str:
    with open(proc.log_path, errors="replace") as fh:
        text = fh.read()
    return text if whole else text[-6000:]


def wait_until(condition: Callable[[], bool], *, timeout: float, proc=None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the cluster exited ({proc.returncode}):\n{cluster_log(proc)}")
        time.sleep(0.5)
    tail = cluster_log(proc) if proc is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")
