import os

from django.apps import AppConfig


def _forget_inherited_db_connections() -> None:
    """Run in a forked child: drop the parent's pools and connections without closing them.

    django-q2 forks its workers. With Django's psycopg pool, the child inherits the parent's
    pool and its sockets; using them from two processes corrupts both ("generator raised
    StopIteration"). Closing them here would close the parent's sockets too, so the child only
    forgets them and opens its own on first use.
    """
    from django.db import connections

    try:
        from django.db.backends.postgresql.base import DatabaseWrapper
    except ImportError:  # psycopg absent: SQLite only, nothing pooled.
        DatabaseWrapper = None  # noqa: N806
    if DatabaseWrapper is not None:
        pools = getattr(DatabaseWrapper, "_connection_pools", None)
        if pools:
            # Keep a reference so the pools are never garbage-collected (and closed) here.
            _orphaned_pools.append(dict(pools))
            pools.clear()
    for conn in connections.all(initialized_only=True):
        if conn.vendor == "postgresql":
            _orphaned_connections.append(conn.connection)
            conn.connection = None
            conn.in_atomic_block = False
            conn.savepoint_ids = []
            conn.needs_rollback = False
            conn.run_on_commit = []


_orphaned_pools: list = []
_orphaned_connections: list = []
_fork_hook_installed = False


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "FindMe core"

    def ready(self) -> None:
        global _fork_hook_installed
        if not _fork_hook_installed:
            os.register_at_fork(after_in_child=_forget_inherited_db_connections)
            _fork_hook_installed = True
        from django_q.signals import post_execute_in_worker, pre_execute

        pre_execute.connect(_forget_logged_queries, dispatch_uid="findme-reset-queries")
        pre_execute.connect(_task_log_context, dispatch_uid="findme-task-log-context")
        post_execute_in_worker.connect(_task_log_done, dispatch_uid="findme-task-log-done")
        from core import checks  # noqa: F401 - registers the system checks


def _forget_logged_queries(sender, **kwargs) -> None:  # noqa: ARG001
    """With DEBUG on (make run), Django logs every query's SQL in the process and nothing clears
    it in a worker: about 400 KB per photo (the rendition bytes are in the SQL). A request
    clears it at its start; a task does the same here."""
    from django.db import reset_queries

    reset_queries()


def _task_log_context(sender, task=None, **kwargs) -> None:  # noqa: ARG001
    """Every line a task logs carries its id and name (core.logging)."""
    from core.logging import context_bind, context_clear

    context_clear()
    if task:
        context_bind(task_id=task.get("id"), task=task.get("func"))


def _task_log_done(sender, **kwargs) -> None:  # noqa: ARG001
    from core.logging import context_clear

    context_clear()
