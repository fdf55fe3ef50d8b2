from django.apps import AppConfig


class GalleryConfig(AppConfig):
    name = "gallery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connect the receivers of the team layer's signals (a project being deleted).
        # Every process (web, workers, beat, commands) refuses to start with a key that cannot read the
        # store's files, before it could write a file no other process can read.
        from django.conf import settings

        from . import (
            credentials,
            services,  # noqa: F401
        )
        from .storage import check_at_startup

        check_at_startup()
        if settings.STUDIO_ENV == "embedded" and settings.STUDIO_C2PA and credentials.uses_own_pki():
            # The embedded mode's first run makes the studio's signing root in the data dir.
            credentials.ensure_own_credentials()
