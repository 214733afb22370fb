# A pulse's run count is `attempt_count`, so it no longer reads like its attempts' rows (`attempt_set`).
# The API keeps calling it `attempts` (pulses.api.serializers). On SQLite this is one
# ALTER TABLE … RENAME COLUMN: the table is not remade, so the search triggers (0005) stay.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pulses", "0006_routines_squashed_0009_routine_deliver"),
    ]

    operations = [
        migrations.RenameField(
            model_name="pulse",
            old_name="attempts",
            new_name="attempt_count",
        ),
        migrations.AlterField(
            model_name="pulse",
            name="attempt_count",
            field=models.PositiveIntegerField(default=0, verbose_name="attempts"),
        ),
    ]
