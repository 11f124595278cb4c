from django.db import migrations

NAME = "findme: job sweep"
REPLACED = ["findme: photo sweep", "findme: member sweep"]


def schedule_create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=REPLACED).delete()
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "photos.tasks.jobs_sweep",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def schedule_delete(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name=NAME).delete()
    for name, func in zip(REPLACED, ["photos.tasks.photos_sweep", "faces.tasks.members_sweep"]):
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": "I", "minutes": 1, "repeats": -1},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("photos", "0004_photo_job_fields"),
        ("faces", "0005_membersearch_job_fields"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(schedule_create, schedule_delete)]
