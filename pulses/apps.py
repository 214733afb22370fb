from django.apps import AppConfig


class PulsesConfig(AppConfig):
    name = "pulses"
    verbose_name = "Pulses"
    default_auto_field = "django.db.models.BigAutoField"
