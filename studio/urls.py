"""Every URL of the studio. Pages first, then ``/api/v1/`` (shared/API.md), then health checks."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from gallery import api as gallery_api
from gallery import board_views
from gallery import views as gallery_views
from generation import api as generation_api
from generation import sdapi
from generation import views as generation_views

from . import account_views, admin_api, manage_views, project_views, quota_views
from . import api as studio_api
from . import views as studio_views
from .boundary import StudioAPI, schema_router

handler404 = "studio.errors_views.not_found"
handler500 = "studio.errors_views.server_error"

pages = [
    path("", studio_views.home, name="home"),
    path("help/permissions/", studio_views.permissions_help, name="help-permissions"),
    path("manage/", manage_views.index, name="manage"),
    path("manage/users/", manage_views.users, name="manage-users"),
    path("manage/users/new/", manage_views.user_new, name="manage-user-new"),
    path(
        "manage/users/<str:username>/deactivate/",
        manage_views.user_deactivate,
        name="manage-user-deactivate",
    ),
    path("manage/usage/", manage_views.usage_dashboard, name="manage-usage"),
    path("manage/audit/", manage_views.audit_page, name="manage-audit"),
    path("manage/audit/export.csv", manage_views.audit_export, name="manage-audit-export"),
    path("manage/quotas/", quota_views.quotas_page, name="manage-quotas"),
    path("manage/models/", manage_views.models_page, name="manage-models"),
    path(
        "manage/models/<str:kind>/<str:item_id>/remove/",
        manage_views.model_remove,
        name="manage-model-remove",
    ),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("p/<slug:slug>/", generation_views.project_generate, name="project"),
    path("p/<slug:slug>/gallery/", gallery_views.gallery, name="gallery"),
    path("p/<slug:slug>/settings/", project_views.project_settings, name="project-settings"),
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
    path("admin/", admin.site.urls),
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

urlpatterns = [
    *pages,
    path("api/v1/", include(api_v1.urls[0])),
    re_path(r"^api/(?P<path>.*)$", studio_api.api_not_found),
    path("sdapi/v1/", include(sdapi_v1.urls[0])),
    re_path(r"^sdapi/(?P<path>.*)$", studio_api.sdapi_not_served, name="sdapi-not-served"),
    path("healthz", studio_api.healthz, name="healthz"),
    path("readyz", studio_api.readyz, name="readyz"),
]
