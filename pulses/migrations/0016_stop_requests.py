# Stop a running pulse (issue 33): who asked to stop its run, and whether it then goes back to
# pending. One ALTER TABLE … ADD COLUMN each, on SQLite too (as 0014: Django would remake the table
# for a NOT NULL column and drop the search triggers); a constant DEFAULT keeps it instant.

from django.db import migrations, models


def _add_column(column: str, definition: str) -> migrations.RunSQL:
    return migrations.RunSQL(
        f"ALTER TABLE pulses ADD COLUMN {column} {definition}",
        reverse_sql=f"ALTER TABLE pulses DROP COLUMN {column}",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("pulses", "0015_health_watchdog"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                _add_column("stop_requested_by", "varchar(200) DEFAULT '' NOT NULL"),
                _add_column("stop_retry", "boolean DEFAULT false NOT NULL"),
            ],
            state_operations=[
                migrations.AddField(
                    model_name="pulse",
                    name="stop_requested_by",
                    field=models.CharField(blank=True, db_default="", default="", max_length=200),
                ),
                migrations.AddField(
                    model_name="pulse",
                    name="stop_retry",
                    field=models.BooleanField(db_default=False, default=False),
                ),
            ],
        ),
    ]
