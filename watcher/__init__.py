"""FindMe's folder watcher: uploads a photographer's folder to an event, exactly once per photo.

Stands apart from the Django project: it talks to the server over HTTP only and needs nothing
but httpx, watchdog and tqdm (see requirements.txt here).
"""

__version__ = "1.0.0"
