"""The admin app, its ModelAdmins loaded with the URLconf rather than at every start.

Django's default admin app imports every app's admin module when the app registry is ready, in every
process. Most of Reeve's processes never serve a page (the worker, the Telegram listener, the MCP
server, `trigger_pulse`, `pulse_queue` …), and those imports were 10-18 % of each one's start
(docs/performance.md).
Here `reeve_site/urls.py` loads them (`admin.autodiscover()`, as Django documents for
`SimpleAdminConfig`), and the admin's system checks load them first, so `manage.py check` and
`doctor` check every ModelAdmin as before.
"""

from django.contrib.admin import autodiscover
from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks


def check_admin(app_configs, **kwargs):
    """Django's two admin checks, after the ModelAdmins they check are registered."""
    autodiscover()
    return [*check_dependencies(**kwargs), *check_admin_app(app_configs, **kwargs)]


class AdminConfig(SimpleAdminConfig):
    def ready(self):
        # SimpleAdminConfig.ready registers the same two checks, which could run before a check that
        # imported the URLconf and so see no ModelAdmin at all.
        checks.register(check_admin, checks.Tags.admin)
