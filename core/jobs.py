"""Background work whose record is a database row, not a broker message.

Every task FindMe queues (a photo to process, a selfie to index, a member to back-match) is a
row with a status. The broker is only a doorbell: a message that is lost (Redis restarted, a
worker SIGKILLed, an enqueue that failed while the broker was down) is found again from the
rows by ``jobs_sweep``, within two minutes. The rules, in one place:

- **Dispatch.** A row is marked ``dispatched_at`` when it is handed to the broker. An enqueue
  that fails clears the mark; the sweep hands over every due row that carries none.
- **Claim and lease.** A worker claims a row with a conditional UPDATE (queued -> running,
  ``attempts + 1``, a lease of ``TASK_LEASE_S``) and keeps the lease alive from a heartbeat
  thread while it works. ``attempts`` after the claim is the claim's token: a run that lost its
  lease cannot write over the run that took the row next.
- **Retry.** A failed attempt goes back to queued with ``not_before`` set by ``retry_delay``:
  exponential back-off with jitter. After ``TASK_MAX_ATTEMPTS`` the row is failed, with the
  error kept for staff. A worker that died holding a row (its lease ran out) is retried at once.
- **Lost messages.** A queued row handed over long ago is dispatched again when the broker is
  empty, or when rows dispatched well after it have already been claimed: the queue is first in,
  first out, so it was overtaken because its message is gone. A duplicate message is harmless:
  its claim finds nothing to claim.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, models, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

logger = logging.getLogger(__name__)


class JobFields(models.Model):
    """What every queued row carries besides its own status."""

    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    # When the row was last handed to the broker; null: not handed over (or the enqueue failed).
    dispatched_at = models.DateTimeField(null=True, blank=True, editable=False)
    # While running: the worker's lease, renewed by its heartbeat. Past it, the worker is gone.
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A retry waits for its back-off: no claim before this.
    not_before = models.DateTimeField(null=True, blank=True, editable=False)
    # The worker of the last claim, as host:pid (for staff, and for faults to be aimed).
    claimed_by = models.CharField(max_length=100, blank=True, editable=False)

    class Meta:
        abstract = True


@dataclass(frozen=True)
class JobKind:
    """One kind of queued row: its model, its statuses and the task that works on it."""

    model: type[models.Model]
    task: str
    args: tuple[str, ...]  # fields of the row passed to the task, in order
    queued: str
    running: str
    failed: str
    status_field: str = "status"
    # Rows that may not run yet for a reason of their own (a back-match waits for its selfie).
    ready: Q = field(default_factory=Q)

    def rows(self, status: str, **filters) -> models.QuerySet:
        return self.model._default_manager.filter(**{self.status_field: status}, **filters)


# --- the retry policy ---------------------------------------------------------------------------
def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt, after ``attempts`` failed ones: exponential, capped,
    with jitter so that rows that failed together (an outage) do not come back together."""
    base = settings.TASK_RETRY_BASE_S * 2 ** max(0, attempts - 1)
    return min(settings.TASK_RETRY_MAX_S, base) * random.uniform(0.5, 1.0)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def lease_expiry() -> datetime:
    return timezone.now() + timedelta(seconds=settings.TASK_LEASE_S)


# --- dispatch -----------------------------------------------------------------------------------
def enqueue(task: str, *args) -> bool:
    """Hand a task to the broker. False (logged) when the broker cannot take it: the caller's
    row stays the record, and the sweep hands it over later."""
    from django_q.tasks import async_task

    try:
        async_task(task, *args)
    except Exception as exc:  # noqa: BLE001 - any broker failure: the row is the record
        logger.warning("enqueue of %s%r failed (%s: %s)", task, args, type(exc).__name__, exc)
        return False
    return True


def dispatch_on_commit(kind: JobKind, pk) -> None:
    """After the current transaction commits, hand the row to the broker. The row must already
    carry ``dispatched_at``; a failed enqueue clears it, so that the sweep sees it at once."""

    # Read before the commit: after it, the database may already be gone, and the caller's
    # answer (201: row and file stored) must not depend on anything that can still fail.
    args = kind.model._default_manager.filter(pk=pk).values_list(*kind.args).first()
    if args is None:
        return

    def hand_over() -> None:
        if not enqueue(kind.task, *args):
            with contextlib.suppress(Exception):  # the database may be down too: sweep rule 3
                kind.model._default_manager.filter(pk=pk).update(dispatched_at=None)

    transaction.on_commit(hand_over)


def dispatch_now(kind: JobKind, pk, args: Sequence) -> bool:
    """Mark and hand over one row outside any transaction. The mark is conditional, so of two
    sweeps at once only one sends the message."""
    now = timezone.now()
    marked = kind.model._default_manager.filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now), pk=pk
    ).update(dispatched_at=now)
    if not marked:
        return False
    if enqueue(kind.task, *args):
        return True
    kind.model._default_manager.filter(pk=pk, dispatched_at=now).update(dispatched_at=None)
    return False


# --- claim and lease ----------------------------------------------------------------------------
def claim(kind: JobKind, pk) -> int | None:
    """Move the row from queued to running for this worker. Returns the claim's token (the new
    ``attempts``), or None when another worker has it, it is not due, or it is gone."""
    now = timezone.now()
    claimed = (
        kind.rows(kind.queued, pk=pk)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .update(
            **{kind.status_field: kind.running},
            attempts=F("attempts") + 1,
            lease_expires_at=lease_expiry(),
            not_before=None,
            claimed_by=worker_name(),
        )
    )
    if not claimed:
        return None
    return kind.model._default_manager.filter(pk=pk).values_list("attempts", flat=True).first()


def claim_next(kind: JobKind, pk) -> tuple[object, int] | None:
    """Answer a message for row ``pk`` with the row that should run now: a rescued row first
    (its worker died or it failed before: it has waited once already, and its new message sits
    at the back of the queue), else ``pk`` itself, else, when ``pk`` is gone or taken, the
    oldest due row. Each message thus starts at most one row, and the queue's messages and the
    due rows stay balanced whatever was lost or sent twice. Returns (pk, token) or None."""
    due = (
        kind.rows(kind.queued)
        .filter(kind.ready)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=timezone.now()))
    )
    for other in due.filter(attempts__gte=1).order_by("pk").values_list("pk", flat=True)[:5]:
        if (token := claim(kind, other)) is not None:
            return other, token
    if (token := claim(kind, pk)) is not None:
        return pk, token
    for other in due.order_by("pk").values_list("pk", flat=True)[:5]:
        if (token := claim(kind, other)) is not None:
            return other, token
    return None


def held(kind: JobKind, pk, token: int) -> models.QuerySet:
    """The row, only while this claim still holds it."""
    return kind.rows(kind.running, pk=pk, attempts=token)


@contextlib.contextmanager
def lease_kept(kind: JobKind, pk, token: int) -> Iterator[None]:
    """Renew the claim's lease every ``TASK_HEARTBEAT_S`` while the block runs.

    The heartbeat is a thread with its own database connection, so the work itself may hold a
    transaction or sit in a C extension (dlib) for seconds. A worker that is killed stops
    beating, and its lease runs out ``TASK_LEASE_S`` later.
    """
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.TASK_HEARTBEAT_S):
                try:
                    held(kind, pk, token).update(lease_expires_at=lease_expiry())
                except Exception:  # noqa: BLE001 - a missed beat is retried; the lease has slack
                    logger.warning("heartbeat of %s %s failed", kind.model.__name__, pk)
        finally:
            connection.close()  # this thread's own connection

    if connection.in_atomic_block:
        # Called inside a transaction (a unit test's): no other connection can see the claim,
        # and a heartbeat would only wait on the caller's lock. A worker never runs a task so.
        yield
        return
    thread = threading.Thread(target=beat, name=f"lease-{kind.model.__name__}-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=settings.TASK_HEARTBEAT_S + 5)


def attempt_failed(
    kind: JobKind, pk, token: int, exc: BaseException | str, *, final: bool = False
) -> str:
    """Record a failed attempt: queued again after the back-off, or failed for good after the
    last attempt (or at once when ``final``: the input itself is bad). Returns the status the row
    was left in."""
    message = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    message = message[:2000]
    if final or token >= settings.TASK_MAX_ATTEMPTS:
        held(kind, pk, token).update(
            **{kind.status_field: kind.failed}, error=message, lease_expires_at=None
        )
        logger.error("%s %s failed for good after %s attempts: %s", kind.task, pk, token, message)
        return kind.failed
    delay = retry_delay(token)
    held(kind, pk, token).update(
        **{kind.status_field: kind.queued},
        error=message,
        lease_expires_at=None,
        dispatched_at=None,
        not_before=timezone.now() + timedelta(seconds=delay),
    )
    logger.warning(
        "%s %s attempt %s failed, retried in %.0f s: %s", kind.task, pk, token, delay, message
    )
    return kind.queued


# --- the sweep ----------------------------------------------------------------------------------
def broker_queue_size() -> int | None:
    from django_q.brokers import get_broker

    try:
        return int(get_broker().queue_size())
    except Exception as exc:  # noqa: BLE001 - an unreachable broker: skip the broker rule
        logger.warning("broker queue size unreadable (%s)", type(exc).__name__)
        return None


def claimed_frontier(kinds: Sequence[JobKind]) -> datetime | None:
    """The newest dispatch time among rows claimed lately on their first message: everything
    the broker handed over before it (less a margin) has been delivered, if it still exists.

    Only first attempts keep the queue's order: a rescued or retried row is sent again late and
    then claimed ahead of the backlog (claim_next), so counting it would make the whole backlog
    look overtaken."""
    since = timezone.now() - timedelta(minutes=15)
    newest = None
    for kind in kinds:
        value = (
            kind.model._default_manager.exclude(**{kind.status_field: kind.queued})
            .filter(dispatched_at__gte=since, attempts=1)
            .aggregate(newest=Max("dispatched_at"))["newest"]
        )
        if value is not None and (newest is None or value > newest):
            newest = value
    return newest


@dataclass
class SweepResult:
    expired: int = 0
    failed: int = 0
    dispatched: int = 0
    redispatched: int = 0


def kind_sweep(
    kind: JobKind, *, broker_size: int | None, frontier: datetime | None, limit: int = 2000
) -> SweepResult:
    """Apply the rules of the module docstring to one kind of row."""
    result = SweepResult()
    now = timezone.now()
    # A running row with no lease at all predates leases: its worker is long gone.
    expired = kind.rows(kind.running).filter(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    )
    result.failed = expired.filter(attempts__gte=settings.TASK_MAX_ATTEMPTS).update(
        **{kind.status_field: kind.failed},
        lease_expires_at=None,
        error="The worker stopped (killed, out of memory or timed out) on every attempt.",
    )
    # A worker that died is no fault of the row: it is queued again at once.
    result.expired = expired.update(
        **{kind.status_field: kind.queued},
        lease_expires_at=None,
        dispatched_at=None,
        not_before=None,
    )
    due = kind.rows(kind.queued).filter(kind.ready)
    due = due.filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
    lost = Q(dispatched_at__isnull=True)
    grace = timedelta(seconds=settings.TASK_REDISPATCH_AFTER_S)
    if broker_size == 0:
        lost |= Q(dispatched_at__lt=now - grace)
    if frontier is not None:
        lost |= Q(dispatched_at__lt=min(frontier - grace / 2, now - grace))
    rows = list(due.filter(lost).order_by("pk").values_list("pk", "dispatched_at", *kind.args))
    for pk, dispatched_at, *args in rows[:limit]:
        if dispatch_now(kind, pk, args):
            if dispatched_at is None:
                result.dispatched += 1
            else:
                result.redispatched += 1
    return result


def sweep_soon(sweep: Callable[[], object]) -> None:
    """Run ``sweep`` here and now, at most once per ``TASK_SWEEP_EVERY_S`` across the fleet.

    Called by workers as they finish work, so that a busy cluster finds lost rows within
    seconds. It runs in the worker, not through the queue: a sweep queued behind a backlog of
    photos would wait for all of them. The schedule (every minute, through the queue) covers an
    idle cluster, whose queue is empty. A cache that is down only skips this."""
    try:
        if not cache.add("jobs:sweep-soon", 1, timeout=settings.TASK_SWEEP_EVERY_S):
            return
    except Exception:  # noqa: BLE001
        return
    try:
        sweep()
    except Exception:  # noqa: BLE001 - the scheduled sweep will try again
        logger.exception("the job sweep failed")
