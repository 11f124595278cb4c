import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# One BLAS thread per process, as in manage.py: web workers serve one request per thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from core.wsgi import closing_after_unread_body  # noqa: E402  (after the settings are named)

application = closing_after_unread_body(get_wsgi_application())
