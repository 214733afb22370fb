"""Reeve's management commands (commands/)."""

from django.core.checks import Tags

# The system checks of a command that serves no URLs: the models it reads and writes. Checking the URLs
# would import the whole API stack (DRF, the schema generator, and psycopg through DRF even on SQLite)
# into every command for nothing: ~0.7 s of CPU per start. `manage.py check` and `migrate` run them all.
COMMAND_CHECKS = [Tags.models]
