from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from . import services
from .audit import client_ip
from .models import ApiToken, AuditEvent, Membership, Project, User


@admin.register(User)
class StudioUserAdmin(UserAdmin):
    """Deactivating here does what the studio's own admin page does: sessions, tokens and sockets end."""

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        deactivating = change and "is_active" in form.changed_data and not obj.is_active
        if deactivating:
            obj.is_active = True  # the service makes the change, with everything that goes with it
        super().save_model(request, obj, form, change)
        if deactivating:
            services.do_deactivate_user(request.user, obj, ip=client_ip(request))


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    inlines = [MembershipInline]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "digest", "created_at", "last_used_at")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is append-only, so nobody adds, changes or deletes events here."""

    list_display = ("time", "actor_name", "action", "target", "project_slug", "ip")
    list_filter = ("action",)
    search_fields = ("actor_name", "target", "project_slug")
    date_hierarchy = "time"
    ordering = ("-time", "-id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
