"""Every URL of the studio. Pages first, then ``/api/v1/`` (shared/API.md), then health checks."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from gallery import api as gallery_api
from gallery import board_views
from gallery import views as gallery_views
from generation import api as generation_api
from generation import views as generation_views

from . import account_views, admin_api, manage_views, project_views, quota_views
from . import api as studio_api
from . import views as studio_views

handler404 = "studio.errors_views.not_found"
handler500 = "studio.errors_views.server_error"

pages = [
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

api_v1 = [
    path("openapi.json", studio_api.openapi, name="api-openapi"),
    path("me", studio_api.me, name="api-me"),
    path("me/quota", studio_api.me_quota, name="api-me-quota"),
    path("me/notifications", gallery_api.me_notifications, name="api-me-notifications"),
    path("models", generation_api.models, name="api-models"),
    path("projects", studio_api.projects, name="api-projects"),
    path("projects/<slug:slug>/members", studio_api.project_members, name="api-project-members"),
    path("projects/<slug:slug>/members/<str:username>", studio_api.project_member, name="api-project-member"),
    path("projects/<slug:slug>/jobs", generation_api.project_jobs, name="api-project-jobs"),
    path("projects/<slug:slug>/assets", gallery_api.project_assets, name="api-project-assets"),
    path("projects/<slug:slug>/export", gallery_api.project_export, name="api-project-export"),
    path("projects/<slug:slug>/uploads", studio_api.project_uploads, name="api-project-uploads"),
    path("projects/<slug:slug>/quota", studio_api.project_quota, name="api-project-quota"),
    path("jobs/<str:job_id>", generation_api.job_detail, name="api-job"),
    path("jobs/<str:job_id>/cancel", generation_api.job_cancel, name="api-job-cancel"),
    path("assets/<str:asset_id>", gallery_api.asset_detail, name="api-asset"),
    path("assets/<str:asset_id>/image", gallery_api.asset_image, name="api-asset-image"),
    path("assets/<str:asset_id>/thumbnail", gallery_api.asset_thumbnail, name="api-asset-thumbnail"),
    path("assets/<str:asset_id>/mask", gallery_api.asset_mask, name="api-asset-mask"),
    path("assets/<str:asset_id>/review", gallery_api.asset_review, name="api-asset-review"),
    path("assets/<str:asset_id>/submit", gallery_api.asset_submit, name="api-asset-submit"),
    path("assets/<str:asset_id>/reviews", gallery_api.asset_reviews, name="api-asset-reviews"),
    path("assets/<str:asset_id>/comments", gallery_api.asset_comments, name="api-asset-comments"),
    path("assets/<str:asset_id>/tags", gallery_api.asset_tags, name="api-asset-tags"),
    path("assets/<str:asset_id>/favourite", gallery_api.asset_favourite, name="api-asset-favourite"),
    path("projects/<slug:slug>/boards", gallery_api.project_boards, name="api-project-boards"),
    path("boards/<int:board_id>", gallery_api.board_detail, name="api-board"),
    path("boards/<int:board_id>/items", gallery_api.board_items, name="api-board-items"),
    path("admin/users", admin_api.users, name="api-admin-users"),
    path("admin/users/<str:username>/quota", studio_api.admin_user_quota, name="api-admin-user-quota"),
    path(
        "admin/users/<str:username>/deactivate",
        admin_api.user_deactivate,
        name="api-admin-user-deactivate",
    ),
    path("admin/audit", admin_api.audit, name="api-admin-audit"),
    path("credentials/root.pem", gallery_api.credentials_root, name="api-credentials-root"),
    path("verify", gallery_api.verify, name="api-verify"),
]

urlpatterns = [
    *pages,
    path("api/v1/", include(api_v1)),
    re_path(r"^api/(?P<path>.*)$", studio_api.api_not_found),
    path("healthz", studio_api.healthz, name="healthz"),
    path("readyz", studio_api.readyz, name="readyz"),
]
