# Issue 33: the agent options a pulse or routine carries (model, timeout_seconds, max_turns). Each
# `model` column is added with one ALTER TABLE … ADD COLUMN, on SQLite too, where Django would remake
# the table for a NOT NULL column and drop the pulses' search triggers (0005), as 0014 does; a constant
# DEFAULT keeps it instant on both databases however long the history is. The nullable counts are
# plain AddFields: Django adds a nullable column without a default in place on both databases.

from django.db import migrations, models

MODEL_HELP = "empty: AGENT_MODEL (or the agent's own)"


def _add_model_column(table: str) -> migrations.RunSQL:
    return migrations.RunSQL(
        f"ALTER TABLE {table} ADD COLUMN model varchar(100) DEFAULT '' NOT NULL",
        reverse_sql=f"ALTER TABLE {table} DROP COLUMN model",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("pulses", "0018_queue_pause"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[_add_model_column("pulses"), _add_model_column("pulse_routines")],
            state_operations=[
                migrations.AddField(
                    model_name="pulse",
                    name="model",
                    field=models.CharField(
                        blank=True, db_default="", default="", help_text=MODEL_HELP, max_length=100
                    ),
                ),
                migrations.AddField(
                    model_name="routine",
                    name="model",
                    field=models.CharField(
                        blank=True, db_default="", default="", help_text=MODEL_HELP, max_length=100
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="pulse",
            name="timeout_seconds",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="seconds before its run is killed; empty: PULSE_TIMEOUT_SECONDS",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="pulse",
            name="max_turns",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="the agent's turn limit for its run (--max-turns); empty: its own",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="routine",
            name="timeout_seconds",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="seconds before its runs are killed; empty: PULSE_TIMEOUT_SECONDS",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="routine",
            name="max_turns",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="the agent's turn limit for each run (--max-turns); empty: its own",
                null=True,
            ),
        ),
    ]
