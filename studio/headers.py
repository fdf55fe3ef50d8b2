"""Response headers every page gets: the Content-Security-Policy (django-csp), and no-store caching.

The policy (``CONTENT_SECURITY_POLICY`` in settings) allows only the studio's own scripts, styles and
images, plus ``data:``/``blob:`` images (live previews, the mask editor). Nothing inline runs: templates
hand data to scripts in ``data-`` attributes. Websockets are named in ``connect-src`` for the host the page
was served from, since ``'self'`` does not cover ``ws:``/``wss:`` in every browser.
"""

from __future__ import annotations

from typing import Any

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import add_never_cache_headers


class StudioCSPMiddleware(CSPMiddleware):
    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:
            return parts
        socket_origin = f"{'wss' if request.is_secure() else 'ws'}://{host}"
        update: dict[str, Any] = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), socket_origin]
        parts.update = update
        return parts


class NoStoreMiddleware:
    """Every page and API answer is someone's private data (or a form with a CSRF token): no browser or proxy
    keeps a copy, unless the view chose its own caching (images: private to the browser, for an hour)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response
