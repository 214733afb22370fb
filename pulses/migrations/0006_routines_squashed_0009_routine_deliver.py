"""Release 23's pulses migrations in one: routines (0006), worker slots (0007), answer deliveries
(0008) and a routine's delivery (0009). Every installation applied that release whole or not at all,
so one that records the old names has this one applied; the old files are gone, their operations are
here in their order, as Django's migration writer prints them."""

import importlib

import django.db.models.deletion
from django.db import migrations, models

# Adding NOT NULL columns makes SQLite remake the pulses table, which drops the search triggers with
# the old table (release 22): they are created again here, and the index rebuilt from the rows.
_search = importlib.import_module(
    "pulses.migrations.0004_token_scopes_squashed_0005_history_indexes_and_search"
)


def restore_sqlite_search(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for statement in _search.SQLITE_SEARCH[1:]:
        schema_editor.execute(statement.replace("CREATE TRIGGER ", "CREATE TRIGGER IF NOT EXISTS "))


def create_hourly_prompt_routine(apps, schema_editor):
    """The hourly heartbeat as a routine, created paused: the deployment guide's cron line
    (`trigger_pulse --heartbeat`) keeps working, and resuming the routine replaces it; the two share
    each hour's key, so run together they never double a heartbeat."""
    Routine = apps.get_model("pulses", "Routine")
    Routine.objects.using(schema_editor.connection.alias).get_or_create(
        name="hourly-prompt",
        defaults={
            "schedule": "@hourly",
            "kind": "hourly_prompt",
            "prompt": "",
            "tags": ["heartbeat"],
            "enabled": False,
            "paused_reason": "created paused: resume it to replace the cron line `trigger_pulse --heartbeat`",
        },
    )


class Migration(migrations.Migration):
    replaces = [
        ("pulses", "0006_routines"),
        ("pulses", "0007_worker_slots"),
        ("pulses", "0008_answer_deliveries"),
        ("pulses", "0009_routine_deliver"),
    ]

    dependencies = [
        ("pulses", "0004_token_scopes_squashed_0005_history_indexes_and_search"),
    ]

    operations = [
        migrations.AddField(
            model_name='pulse',
            name='check_command',
            field=models.TextField(blank=True, db_default='', default=''),
        ),
        migrations.AddField(
            model_name='pulse',
            name='fire_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='pulse',
            name='skipped',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.CreateModel(
            name='Routine',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100, unique=True)),
                ('prompt', models.TextField(blank=True)),
                ('schedule', models.CharField(help_text="a 5-field cron expression, @hourly/@daily/@weekly, or 'every 30 minutes'", max_length=200)),
                ('timezone', models.CharField(blank=True, default='', help_text='an IANA zone; empty follows TIME_ZONE', max_length=64)),
                ('priority', models.CharField(choices=[('critical', 'Critical'), ('high', 'High'), ('normal', 'Normal'), ('low', 'Low'), ('deferred', 'Deferred')], default='normal', max_length=16)),
                ('tags', models.JSONField(blank=True, default=list)),
                ('sticky_notes', models.JSONField(blank=True, default=list)),
                ('max_retries', models.PositiveIntegerField(default=3)),
                ('session_policy', models.CharField(choices=[('new', 'New'), ('continue', 'Continue'), ('fixed', 'Fixed')], default='new', max_length=16)),
                ('session_id', models.CharField(blank=True, default='', max_length=200)),
                ('kind', models.CharField(choices=[('prompt', 'Prompt'), ('hourly_prompt', 'Hourly Prompt')], default='prompt', max_length=16)),
                ('source', models.CharField(choices=[('owner', 'Owner'), ('agent', 'Agent')], default='owner', max_length=16)),
                ('enabled', models.BooleanField(default=True)),
                ('paused_reason', models.CharField(blank=True, default='', max_length=300)),
                ('active_from', models.TimeField(blank=True, null=True)),
                ('active_until', models.TimeField(blank=True, null=True)),
                ('catch_up_window', models.DurationField(blank=True, help_text='how late a missed fire still runs; empty: one period, at most 24 h', null=True)),
                ('check_command', models.TextField(blank=True, default='', help_text='run in the Desk first: exit 0 wakes the agent, 1 skips the run')),
                ('pause_after_failures', models.PositiveIntegerField(default=5, help_text='pause after this many failed runs in a row (0: never)')),
                ('failure_streak', models.PositiveIntegerField(default=0)),
                ('next_fire_at', models.DateTimeField(blank=True, null=True)),
                ('next_fire_zone', models.CharField(blank=True, default='', max_length=64)),
                ('last_fire_at', models.DateTimeField(blank=True, null=True)),
                ('last_result', models.CharField(blank=True, choices=[('completed', 'Completed'), ('failed', 'Failed'), ('skipped', 'Skipped')], default='', max_length=16)),
                ('fire_count', models.PositiveIntegerField(default=0)),
                ('missed_count', models.PositiveIntegerField(default=0)),
                ('outside_window_count', models.PositiveIntegerField(default=0)),
                ('check_skip_count', models.PositiveIntegerField(default=0)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('last_pulse', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='pulses.pulse')),
            ],
            options={
                'db_table': 'pulse_routines',
                'ordering': ['name'],
            },
        ),
        migrations.AddField(
            model_name='pulse',
            name='routine',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='pulses', to='pulses.routine'),
        ),
        migrations.AddConstraint(
            model_name='pulse',
            constraint=models.UniqueConstraint(condition=models.Q(('routine__isnull', False)), fields=('routine', 'fire_at'), name='pulses_one_per_fire'),
        ),
        migrations.AddIndex(
            model_name='routine',
            index=models.Index(condition=models.Q(('enabled', True)), fields=['next_fire_at', 'id'], name='routines_next_fire_idx'),
        ),
        migrations.RunPython(restore_sqlite_search, migrations.RunPython.noop),
        migrations.RunPython(create_hourly_prompt_routine, migrations.RunPython.noop),
        migrations.AddField(
            model_name='workerrecord',
            name='concurrency',
            field=models.IntegerField(default=1),
        ),
        migrations.AddField(
            model_name='workerrecord',
            name='critical_reserved',
            field=models.IntegerField(default=0),
        ),
        migrations.CreateModel(
            name='Delivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('chat_id', models.BigIntegerField(blank=True, null=True)),
                ('reply_to_message_id', models.BigIntegerField(blank=True, null=True)),
                ('state', models.CharField(choices=[('waiting', 'Waiting'), ('sent', 'Sent'), ('skipped', 'Skipped'), ('failed', 'Failed')], default='waiting', max_length=16)),
                ('agent_notified', models.BooleanField(default=False, help_text='the agent messaged the user itself during the run (send_notification)')),
                ('parts_sent', models.PositiveIntegerField(default=0)),
                ('tries', models.PositiveIntegerField(default=0)),
                ('next_try_at', models.DateTimeField(blank=True, null=True)),
                ('detail', models.TextField(blank=True, default='', help_text="why it was skipped, or Telegram's refusal")),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('pulse', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='delivery', to='pulses.pulse')),
            ],
            options={
                'db_table': 'pulse_deliveries',
                'indexes': [models.Index(condition=models.Q(('state', 'waiting')), fields=['pulse'], name='deliveries_waiting_idx')],
            },
        ),
        migrations.AddField(
            model_name='routine',
            name='deliver',
            field=models.CharField(blank=True, choices=[('', 'no'), ('telegram', 'telegram')], default='', help_text="telegram: each run's answer goes to the configured chat (as deliver on a pulse)", max_length=16),
        ),
    ]
