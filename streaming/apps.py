"""The ``streaming`` app: registers its system checks; its models are the chat's stored
conversations."""

from django.apps import AppConfig, apps


class StreamingConfig(AppConfig):
    name = "streaming"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Streaming"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the checks
        from .shutdown import install_for_daphne

        install_for_daphne()
        if apps.is_installed("django.contrib.auth"):
            from . import user_deletion

            user_deletion.connect()
