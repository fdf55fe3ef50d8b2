from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from studio.metrics import register_collector

        from .metrics import GenerationCollector

        register_collector(GenerationCollector)
