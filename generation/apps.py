from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connect the receivers of the team layer's signals (a project being deleted).
        from studio.metrics import register_collector

        from . import services  # noqa: F401
        from .metrics import GenerationCollector

        register_collector(GenerationCollector)
