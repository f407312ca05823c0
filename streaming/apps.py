"""The ``streaming`` app: registers its system checks."""

from django.apps import AppConfig


class StreamingConfig(AppConfig):
    name = "streaming"
    verbose_name = "Streaming"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the checks
        from .shutdown import install_for_daphne

        install_for_daphne()
