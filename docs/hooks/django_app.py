"""Django, set up once in the process that builds the site, for the hooks that read the code (the API
schema, the commands). Not a hook itself: the hooks import it from their own folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def setup() -> None:
    """This checkout's Django project, configured from no one's `.env` and needing no secret key file."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reeve_site.settings")
    os.environ["REEVE_IGNORE_DOTENV"] = "1"
    os.environ.setdefault("SECRET_KEY", "docs-build-only")
    import django

    django.setup()
