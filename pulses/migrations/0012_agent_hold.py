# The queue-wide hold while the agent cannot run (pulses.agent_hold): one row, read by every worker,
# the web process and the commands.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pulses", "0011_budget_caps_reached"),
    ]

    operations = [
        migrations.CreateModel(
            name="AgentHold",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("held", models.BooleanField(default=False)),
                ("reason", models.CharField(blank=True, default="", max_length=32)),
                ("problem", models.TextField(blank=True, default="", help_text="what is wrong, in Reeve's words")),
                ("fix", models.TextField(blank=True, default="", help_text="the command that fixes it")),
                ("detail", models.TextField(blank=True, default="", help_text="the agent's own words")),
                ("since", models.DateTimeField(blank=True, null=True)),
                (
                    "resets_at",
                    models.DateTimeField(blank=True, help_text="a usage limit's reset, when known", null=True),
                ),
                (
                    "recheck_at",
                    models.DateTimeField(blank=True, help_text="when one pulse is tried again", null=True),
                ),
                (
                    "rechecks",
                    models.PositiveIntegerField(default=0, help_text="runs held in a row (the backoff's count)"),
                ),
                ("ended_at", models.DateTimeField(blank=True, null=True)),
                ("warning", models.TextField(blank=True, default="", help_text="a usage warning (not a hold)")),
                ("warning_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "db_table": "agent_hold",
            },
        ),
    ]
