"""Release 22's pulses migrations in one: the API token's scope (0004) and the history's indexes and
prompt search (0005). Every installation applied that release whole or not at all, so one that
records the old names has this one applied; the old files are gone, their operations are here in
their order, as Django's migration writer prints them."""

from django.db import migrations, models

# Search over prompts. SQLite: an FTS5 index whose content is the pulses table itself, kept in step by
# triggers: every way a row comes or goes (the queue, the admin's delete, retention, a bulk import)
# passes through them, and a prompt never changes after the pulse is created. A migration that
# remakes the pulses table on SQLite (Django does for some ALTERs) drops these triggers with the old
# table and must create them again: tests/core/test_history.py checks they exist after every migration.
# PostgreSQL: a GIN index on the prompt's tsvector ('simple': lower-cased words, no stemming), which
# PostgreSQL maintains itself.
SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE pulse_search USING fts5(prompt, content='pulses', content_rowid='id')",
    """CREATE TRIGGER pulse_search_insert AFTER INSERT ON pulses BEGIN
        INSERT INTO pulse_search(rowid, prompt) VALUES (new.id, new.prompt);
    END""",
    """CREATE TRIGGER pulse_search_delete AFTER DELETE ON pulses BEGIN
        INSERT INTO pulse_search(pulse_search, rowid, prompt) VALUES ('delete', old.id, old.prompt);
    END""",
    """CREATE TRIGGER pulse_search_update AFTER UPDATE OF prompt ON pulses BEGIN
        INSERT INTO pulse_search(pulse_search, rowid, prompt) VALUES ('delete', old.id, old.prompt);
        INSERT INTO pulse_search(rowid, prompt) VALUES (new.id, new.prompt);
    END""",
    "INSERT INTO pulse_search(pulse_search) VALUES ('rebuild')",
]
SQLITE_SEARCH_DROP = [
    "DROP TRIGGER IF EXISTS pulse_search_insert",
    "DROP TRIGGER IF EXISTS pulse_search_delete",
    "DROP TRIGGER IF EXISTS pulse_search_update",
    "DROP TABLE IF EXISTS pulse_search",
]
POSTGRES_SEARCH = [
    "CREATE INDEX pulses_prompt_search_idx ON pulses USING gin (to_tsvector('simple', prompt))",
]
POSTGRES_SEARCH_DROP = ["DROP INDEX IF EXISTS pulses_prompt_search_idx"]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    replaces = [
        ("pulses", "0004_token_scopes"),
        ("pulses", "0005_history_indexes_and_search"),
    ]

    dependencies = [
        ("pulses", "0003_one_running_pulse_per_session"),
    ]

    operations = [
        migrations.AddField(
            model_name='apitoken',
            name='scope',
            field=models.CharField(choices=[('full', 'Full'), ('agent', 'Agent')], default='full', max_length=16),
        ),
        migrations.CreateModel(
            name='FinishedDay',
            fields=[
                ('day', models.DateField(primary_key=True, serialize=False)),
                ('completed', models.IntegerField(default=0)),
                ('failed', models.IntegerField(default=0)),
                ('cancelled', models.IntegerField(default=0)),
            ],
            options={
                'db_table': 'pulse_finished_days',
                'ordering': ['day'],
            },
        ),
        migrations.RemoveIndex(
            model_name='pulse',
            name='pulses_finished_idx',
        ),
        migrations.AddIndex(
            model_name='pulse',
            index=models.Index(fields=['status', 'finished_at'], name='pulses_status_finished_idx'),
        ),
        migrations.AddIndex(
            model_name='pulse',
            index=models.Index(fields=['status', 'id'], name='pulses_status_id_idx'),
        ),
        migrations.AddIndex(
            model_name='pulse',
            index=models.Index(fields=['scheduled_at'], name='pulses_scheduled_idx'),
        ),
        migrations.AddIndex(
            model_name='pulse',
            index=models.Index(fields=['source', 'id'], name='pulses_source_idx'),
        ),
        migrations.AddIndex(
            model_name='pulseattempt',
            index=models.Index(fields=['finished_at'], name='attempts_finished_idx'),
        ),
        migrations.AddIndex(
            model_name='pulseattempt',
            index=models.Index(condition=models.Q(models.Q(('stdout_tail', ''), _negated=True), models.Q(('stderr_tail', ''), _negated=True), _connector='OR'), fields=['finished_at'], name='attempts_with_tails_idx'),
        ),
        migrations.RunPython(
            _run({"sqlite": SQLITE_SEARCH, "postgresql": POSTGRES_SEARCH}),
            _run({"sqlite": SQLITE_SEARCH_DROP, "postgresql": POSTGRES_SEARCH_DROP}),
        ),
    ]
