# The queue's pause switch (pulses.queue_pause): one row, read by every worker before each claim, the
# web process and the commands.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pulses", "0017_run_tails"),
    ]

    operations = [
        migrations.CreateModel(
            name="QueuePause",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("paused", models.BooleanField(default=False)),
                ("since", models.DateTimeField(blank=True, null=True)),
                (
                    "until",
                    models.DateTimeField(blank=True, help_text="when it resumes by itself; empty: by hand", null=True),
                ),
                ("reason", models.CharField(blank=True, default="", max_length=300)),
                ("paused_by", models.CharField(blank=True, default="", max_length=200)),
                ("ended_at", models.DateTimeField(blank=True, null=True)),
                ("ended_by", models.CharField(blank=True, default="", max_length=200)),
            ],
            options={
                "verbose_name": "queue pause",
                "db_table": "queue_pause",
            },
        ),
    ]
