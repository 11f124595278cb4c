"""Event moved from photos to events: the foreign keys point at the same table (state only)."""

import django.db.models.deletion
from django.db import migrations, models


def _event_fk(related_name):
    return models.ForeignKey(
        on_delete=django.db.models.deletion.CASCADE, related_name=related_name, to="events.event"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("faces", "0005_membersearch_job_fields"),
        ("events", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name=model, name="event", field=_event_fk("+"))
                for model in ("face", "match", "collectionface", "membersearch")
            ],
            database_operations=[],
        ),
    ]
