"""Every URL of the studio. Pages first, then ``/api/v1/`` (shared/API.md), then health checks."""

from allauth.account import views as account
from allauth.mfa.base import views as mfa
from allauth.mfa.recovery_codes import views as recovery_codes
from allauth.mfa.totp import views as totp
from allauth.mfa.webauthn import views as webauthn
from allauth.socialaccount import views as socialaccount
from allauth.socialaccount.providers.openid_connect import views as openid_connect
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.generic import RedirectView

from gallery import api as gallery_api
from gallery import board_views
from gallery import views as gallery_views
from generation import api as generation_api
from generation import library_views, sdapi, style_views
from generation import views as generation_views

from . import account_views, admin_api, manage_views, metrics, project_views, quota_views, sign_in
from . import api as studio_api
from . import views as studio_views
from .boundary import StudioAPI, schema_router

handler404 = "studio.errors_views.not_found"
handler500 = "studio.errors_views.server_error"

pages: list[URLPattern | URLResolver] = [
    path("", studio_views.home, name="home"),
    path("help/permissions/", studio_views.permissions_help, name="help-permissions"),
    path("help/privacy/", gallery_views.privacy_page, name="help-privacy"),
    path("verify/", gallery_views.verify_page, name="verify"),
    path("manage/", manage_views.index, name="manage"),
    path("manage/users/", manage_views.users, name="manage-users"),
    path("manage/users/new/", manage_views.user_new, name="manage-user-new"),
    path(
        "manage/users/<str:username>/deactivate/",
        manage_views.user_deactivate,
        name="manage-user-deactivate",
    ),
    path(
        "manage/users/<str:username>/mfa-reset/",
        manage_views.user_mfa_reset,
        name="manage-user-mfa-reset",
    ),
    path("manage/usage/", manage_views.usage_dashboard, name="manage-usage"),
    path("manage/audit/", manage_views.audit_page, name="manage-audit"),
    path("manage/audit/export.csv", manage_views.audit_export, name="manage-audit-export"),
    path("manage/quotas/", quota_views.quotas_page, name="manage-quotas"),
    path("manage/models/", library_views.models_page, name="manage-models"),
    path(
        "manage/models/<str:kind>/<str:item_id>/remove/",
        library_views.model_remove,
        name="manage-model-remove",
    ),
    path("manage/workers/", generation_views.workers_page, name="manage-workers"),
    path("p/<slug:slug>/", generation_views.project_generate, name="project"),
    path("p/<slug:slug>/gallery/", gallery_views.gallery, name="gallery"),
    path("p/<slug:slug>/settings/", project_views.project_settings, name="project-settings"),
    path("p/<slug:slug>/delete/", project_views.project_delete, name="project-delete"),
    path("p/<slug:slug>/styles/", style_views.project_styles, name="project-styles"),
    path("styles/<int:style_id>/", style_views.style_page, name="style"),
    path("styles/<int:style_id>/delete/", style_views.style_delete, name="style-delete"),
    path("account/", account_views.account, name="account"),
    path("account/tokens/", account_views.token_create, name="account-token-create"),
    path("account/tokens/<int:token_id>/revoke/", account_views.token_revoke, name="account-token-revoke"),
    path("account/password/", account_views.password_change, name="account-password"),
    path("jobs/<str:job_id>/", generation_views.job_page, name="job"),
    path("assets/<str:asset_id>/", gallery_views.asset_page, name="asset"),
    path("assets/<str:asset_id>/image.png", gallery_views.asset_image, name="asset-image"),
    path("assets/<str:asset_id>/submit/", gallery_views.asset_submit, name="asset-submit"),
    path("assets/<str:asset_id>/review/", gallery_views.asset_review, name="asset-review"),
    path("assets/<str:asset_id>/comments/", gallery_views.asset_comment, name="asset-comment"),
    path("p/<slug:slug>/gallery/submit/", gallery_views.gallery_submit, name="gallery-submit"),
    path("notifications/", gallery_views.notifications, name="notifications"),
    path("notifications/read/", gallery_views.notifications_read, name="notifications-read"),
    path("assets/<str:asset_id>/thumb.jpg", gallery_views.asset_thumb, name="asset-thumb"),
    path("assets/<str:asset_id>/mask.png", gallery_views.asset_mask, name="asset-mask"),
    path(
        "assets/<str:asset_id>/controls/<int:unit>.png",
        gallery_views.asset_control_map,
        name="asset-control-map",
    ),
    path("assets/<str:asset_id>/delete/", gallery_views.asset_delete, name="asset-delete"),
    path("p/<slug:slug>/boards/", board_views.boards, name="boards"),
    path("p/<slug:slug>/boards/new/", board_views.board_create, name="board-create"),
    path("p/<slug:slug>/compare/", board_views.compare, name="compare"),
    path("boards/<int:board_id>/", board_views.board, name="board"),
    path("boards/<int:board_id>/remove/", board_views.board_remove, name="board-remove"),
    path("boards/<int:board_id>/delete/", board_views.board_delete, name="board-delete"),
    path("assets/<str:asset_id>/boards/", board_views.asset_board, name="asset-board"),
    path("assets/<str:asset_id>/tags/", board_views.asset_tag, name="asset-tag"),
    path("assets/<str:asset_id>/tags/remove/", board_views.asset_untag, name="asset-untag"),
    path("assets/<str:asset_id>/favourite/", board_views.asset_favourite, name="asset-favourite"),
]

# /api/v1/: one typed boundary (studio/boundary.py); each app's operations are in its api.py.
api_v1 = StudioAPI(
    title="Studio API",
    version="1",
    description="The public API of the studio (shared/API.md is its contract).",
    servers=[{"url": "/api/v1"}],
    openapi_url=None,
    urls_namespace="api-v1",
)
for router in (studio_api.router, admin_api.router, generation_api.router, gallery_api.router):
    api_v1.add_router("", router)
api_v1.add_router("", schema_router(api_v1))

# /sdapi/v1/: the AUTOMATIC1111 API on the same boundary and services (generation/sdapi.py).
sdapi_v1 = StudioAPI(
    title="AUTOMATIC1111-compatible API",
    version="1",
    description="AUTOMATIC1111's /sdapi/v1 on the studio's accounts, projects, quotas, audit and gallery.",
    servers=[{"url": "/sdapi/v1"}],
    openapi_url=None,
    urls_namespace="sdapi-v1",
    auth=sdapi.TOKENS,
    detail=True,
)
sdapi_v1.add_router("", sdapi.router)
sdapi_v1.add_router("", schema_router(sdapi_v1, url_name="sdapi-openapi"))

# Signing in: allauth's views that the studio uses, under the names allauth reverses. Local sign-up, email
# management and password reset by email are left out: admins create accounts, and passwords change on the
# Account page.
sign_in_pages = [
    path("login/", sign_in.LoginView.as_view(), name="account_login"),
    path("logout/", account.logout, name="account_logout"),
    path("inactive/", account.account_inactive, name="account_inactive"),
    path("reauthenticate/", account.reauthenticate, name="account_reauthenticate"),
    # Two-factor: the Account page is the overview; allauth's pages set each factor up.
    path("2fa/", login_required(RedirectView.as_view(url="/account/#mfa")), name="mfa_index"),
    path("2fa/authenticate/", mfa.authenticate, name="mfa_authenticate"),
    path("2fa/reauthenticate/", mfa.reauthenticate, name="mfa_reauthenticate"),
    path("2fa/totp/activate/", totp.activate_totp, name="mfa_activate_totp"),
    path("2fa/totp/deactivate/", totp.deactivate_totp, name="mfa_deactivate_totp"),
    path("2fa/recovery-codes/", recovery_codes.view_recovery_codes, name="mfa_view_recovery_codes"),
    path(
        "2fa/recovery-codes/generate/",
        recovery_codes.generate_recovery_codes,
        name="mfa_generate_recovery_codes",
    ),
    path(
        "2fa/recovery-codes/download/",
        recovery_codes.download_recovery_codes,
        name="mfa_download_recovery_codes",
    ),
    # Single sign-on: the identity provider's round trip, and what allauth shows around it.
    path("oidc/<str:provider_id>/login/", openid_connect.login, name="openid_connect_login"),
    path("oidc/<str:provider_id>/login/callback/", openid_connect.callback, name="openid_connect_callback"),
    path("3rdparty/", socialaccount.connections, name="socialaccount_connections"),
    path("3rdparty/login/cancelled/", socialaccount.login_cancelled, name="socialaccount_login_cancelled"),
    path("3rdparty/login/error/", socialaccount.login_error, name="socialaccount_login_error"),
    path("3rdparty/signup/", socialaccount.signup, name="socialaccount_signup"),
]
if settings.STUDIO_PASSKEYS:
    sign_in_pages += [
        path("2fa/webauthn/", webauthn.list_webauthn, name="mfa_list_webauthn"),
        path("2fa/webauthn/add/", webauthn.add_webauthn, name="mfa_add_webauthn"),
        path(
            "2fa/webauthn/reauthenticate/",
            webauthn.reauthenticate_webauthn,
            name="mfa_reauthenticate_webauthn",
        ),
        path("2fa/webauthn/keys/<int:pk>/remove/", webauthn.remove_webauthn, name="mfa_remove_webauthn"),
        path("2fa/webauthn/keys/<int:pk>/edit/", webauthn.edit_webauthn, name="mfa_edit_webauthn"),
    ]
pages += [path("accounts/", include(sign_in_pages))]

if settings.STUDIO_DJANGO_ADMIN:
    # Read-only (studio/admin.py); its sign-in is the studio's, with the throttle, SSO-only and MFA.
    pages.append(path("admin/", admin.site.urls))

urlpatterns = [
    *pages,
    path("api/v1/", include(api_v1.urls[0])),
    re_path(r"^api/(?P<path>.*)$", studio_api.api_not_found),
    path("sdapi/v1/", include(sdapi_v1.urls[0])),
    re_path(r"^sdapi/(?P<path>.*)$", studio_api.sdapi_not_served, name="sdapi-not-served"),
    path("healthz", studio_api.healthz, name="healthz"),
    path("readyz", studio_api.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("internal/admin-check", studio_views.admin_check, name="admin-check"),
]
