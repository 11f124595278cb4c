"""A second job-sweep schedule, half a minute after the first: django-q2 schedules run at most
once a minute, and its scheduler looks every 30 s, so one schedule left an idle cluster up to
90 s between sweeps. Two, offset by 30 s, sweep about every 30 s."""

from datetime import timedelta

from django.db import migrations
from django.utils import timezone

NAME = "findme: job sweep, second half of the minute"


def schedule_create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    first = Schedule.objects.filter(name="findme: job sweep").first()
    start = (first.next_run if first and first.next_run else timezone.now()) + timedelta(
        seconds=30
    )
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "photos.tasks.jobs_sweep",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
            "next_run": start,
        },
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("photos", "0007_events_moved"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(schedule_create, schedule_delete)]
