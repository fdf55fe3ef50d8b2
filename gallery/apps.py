from django.apps import AppConfig


class GalleryConfig(AppConfig):
    name = "gallery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process (web, workers, beat, commands) refuses to start with a key that cannot read the
        # store's files, before it could write a file no other process can read.
        from .storage import check_at_startup

        check_at_startup()
