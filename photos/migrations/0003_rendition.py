import django.db.models.deletion
from django.db import migrations, models


def renditions_copy(apps, schema_editor):
    Photo = apps.get_model("photos", "Photo")
    Rendition = apps.get_model("photos", "Rendition")
    batch = []
    for pk, thumb, preview in (
        Photo.objects.exclude(thumb=None).values_list("pk", "thumb", "preview").iterator(chunk_size=200)
    ):
        batch.append(Rendition(photo_id=pk, thumb=thumb, preview=preview or b""))
        if len(batch) >= 200:
            Rendition.objects.bulk_create(batch)
            batch = []
    Rendition.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [("photos", "0002_sweep_schedules")]

    operations = [
        migrations.CreateModel(
            name="Rendition",
            fields=[
                (
                    "photo",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="rendition",
                        serialize=False,
                        to="photos.photo",
                    ),
                ),
                ("thumb", models.BinaryField()),
                ("preview", models.BinaryField()),
            ],
        ),
        migrations.RunPython(renditions_copy, migrations.RunPython.noop),
        migrations.RemoveField(model_name="photo", name="preview"),
        migrations.RemoveField(model_name="photo", name="thumb"),
    ]
