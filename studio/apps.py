from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "studio"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connect the signal receivers: audit of sign-in/sign-out and of MFA changes, and each user's
        # session keys.
        from . import audit, mfa_policy, user_sessions  # noqa: F401
