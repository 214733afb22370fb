# Scopes (issue 30): the claim's nonce, which each run token names so a token dies with its claim; the
# mark of a pulse preempted once; the expiry of a short-lived API token (the Desk's); and the
# `wake-checks` scope. The two pulse columns are added with one ALTER TABLE … ADD COLUMN each, on
# SQLite too, where Django would remake the table for a NOT NULL column and drop the search triggers
# (0005); a constant DEFAULT keeps it instant on both databases however long the history is.

from django.db import migrations, models


def _add_column(column: str, definition: str) -> migrations.RunSQL:
    return migrations.RunSQL(
        f"ALTER TABLE pulses ADD COLUMN {column} {definition}",
        reverse_sql=f"ALTER TABLE pulses DROP COLUMN {column}",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("pulses", "0013_delivery_parts_started"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                _add_column("claim_nonce", "varchar(32) DEFAULT '' NOT NULL"),
                _add_column("preempted", "boolean DEFAULT false NOT NULL"),
            ],
            state_operations=[
                migrations.AddField(
                    model_name="pulse",
                    name="claim_nonce",
                    field=models.CharField(blank=True, db_default="", default="", max_length=32),
                ),
                migrations.AddField(
                    model_name="pulse",
                    name="preempted",
                    field=models.BooleanField(db_default=False, default=False),
                ),
            ],
        ),
        migrations.AlterField(
            model_name="apitoken",
            name="scope",
            field=models.CharField(
                choices=[("full", "Full"), ("agent", "Agent"), ("wake-checks", "Wake Checks")],
                default="full",
                max_length=16,
            ),
        ),
    ]
