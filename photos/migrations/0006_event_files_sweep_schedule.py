from django.db import migrations

NAME = "findme: files of deleted events"


def schedule_create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "photos.tasks.event_files_sweep",
            "schedule_type": "I",
            "minutes": 10,
            "repeats": -1,
        },
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("photos", "0005_job_sweep_schedule")]

    operations = [migrations.RunPython(schedule_create, schedule_delete)]
