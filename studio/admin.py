"""Django's admin site, for looking only. It is off unless ``STUDIO_DJANGO_ADMIN`` is on (studio/urls.py).

Every change to the studio's data goes through its services, which check, audit and clean up (a deleted
project's images, a deactivated user's sessions and sockets). The admin site would go around all of that, so
here every model is read-only: no adding, changing or deleting, for superusers too. Secrets are not shown
at all: token digests, MFA secrets and the SSO client secret. Site admins change things in /manage/.
"""

from __future__ import annotations

from typing import Any

from allauth.account.decorators import secure_admin_login
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin
from django.contrib.auth.models import Group
from django.http import HttpRequest

from .models import ApiToken, AuditEvent, Membership, Project, QuotaLimit, QuotaUsage, User, UserSession

# The admin's own sign-in form would skip the studio's throttle, SSO-only rule and MFA: use the studio's.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]
admin.site.site_header = "Studio (read-only)"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists and view pages only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        return {}  # not even "delete selected"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(User)
class StudioUserAdmin(ReadOnlyAdmin):
    list_display = ("username", "email", "is_active", "is_superuser", "last_login", "date_joined")
    list_filter = ("is_active", "is_superuser")
    search_fields = ("username", "email")
    exclude = ("password", "user_permissions", "groups")


@admin.register(Project)
class ProjectAdmin(ReadOnlyAdmin):
    list_display = ("name", "slug", "created_at")
    inlines = [MembershipInline]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = (
        "prefix",
        "user",
        "name",
        "scope",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("scope",)
    exclude = ("digest",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail is append-only: nobody adds, changes or deletes events here."""

    list_display = ("time", "actor_name", "action", "target", "project_slug", "ip")
    list_filter = ("action",)
    search_fields = ("actor_name", "target", "project_slug")
    date_hierarchy = "time"
    ordering = ("-time", "-id")


@admin.register(QuotaLimit)
class QuotaLimitAdmin(ReadOnlyAdmin):
    list_display = ("scope", "user", "project", "images", "gpu_seconds", "updated_at")


@admin.register(QuotaUsage)
class QuotaUsageAdmin(ReadOnlyAdmin):
    list_display = ("subject", "subject_id", "period_start", "images_used", "gpu_seconds_used")


@admin.register(UserSession)
class UserSessionAdmin(ReadOnlyAdmin):
    list_display = ("user", "created_at")
    exclude = ("session_key",)


# allauth's own models: the same rule, and their secrets hidden.
for model in (EmailAddress, SocialApp, SocialAccount, SocialToken, Authenticator, Group):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(SocialAccount)
class SocialAccountAdmin(ReadOnlyAdmin):
    list_display = ("user", "provider", "uid", "last_login", "date_joined")
    exclude = ("extra_data",)


@admin.register(Authenticator)
class AuthenticatorAdmin(ReadOnlyAdmin):
    list_display = ("user", "type", "created_at", "last_used_at")
    exclude = ("data",)
