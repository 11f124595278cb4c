from django.db import migrations

NAME = "findme: collections of deleted events"


def schedule_create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "faces.tasks.collections_orphaned_sweep",
            "schedule_type": "I",
            "minutes": 30,
            "repeats": -1,
        },
    )


def schedule_delete(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("faces", "0007_match_rejected_at"), ("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(schedule_create, schedule_delete)]
