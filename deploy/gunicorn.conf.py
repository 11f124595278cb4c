"""gunicorn for FindMe, behind deploy/nginx/findme.conf: `gunicorn -c deploy/gunicorn.conf.py`.

gunicorn's sync and gthread workers hold a worker for as long as a client takes to send its
request: ten slow clients stalled every worker for 25 s (DESIGN.md). nginx reads whole requests
and answers first, so gunicorn only ever talks to a fast local client. Never expose it directly.
Every value comes from the environment (deploy/findme.env.example).
"""

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
wsgi_app = "config.wsgi:application"
# WEB_CONCURRENCY is also what config/settings.py counts connections with (core/checks.py).
workers = _int("WEB_CONCURRENCY", 4)
threads = _int("GUNICORN_THREADS", 1)
worker_class = "gthread" if threads > 1 else "sync"
# A request that runs longer is a stuck worker: it is killed and replaced. Uploads arrive whole
# from nginx, so the longest request is a zip of originals being streamed.
timeout = _int("GUNICORN_TIMEOUT", 120)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# nginx keeps connections to gunicorn open (upstream keepalive): close them after a while idle.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Workers heartbeat through a file; on a disk-backed /tmp a slow disk makes the arbiter kill
# healthy workers. /dev/shm is memory.
# gunicorn creates its own unique, unlinked file there: a shared folder is what it expects.
_SHM = "/dev/shm"  # noqa: S108
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or (
    _SHM if os.path.isdir(_SHM) else None
)
# Replace each worker now and then: a slow leak never grows without bound.
max_requests = _int("GUNICORN_MAX_REQUESTS", 1000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 100)
# Only the proxy may say what the scheme was (X-Forwarded-Proto): its address, comma-separated.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Bounds on what reaches Django even if the proxy let it through.
limit_request_line = 8190
limit_request_fields = 100
# An empty GUNICORN_ACCESS_LOG turns the access log off (nginx keeps one).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
