"""The small framework every ``/api/v1/`` endpoint uses: authentication, JSON in and out, errors as JSON."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseBase, JsonResponse

from .errors import ServiceError

logger = logging.getLogger(__name__)

Handler = Callable[..., Any]


def error_response(
    status: int, message: str, errors: dict[str, list[str]] | None = None, extra: dict | None = None
) -> JsonResponse:
    body: dict[str, Any] = {**(extra or {}), "error": message}
    if errors:
        body["errors"] = errors
    return JsonResponse(body, status=status)


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object body; a ServiceError (400) for anything else."""
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError("The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise ServiceError("The request body must be a JSON object.")
    return data


def api(methods: list[str], *, login: bool = True) -> Callable[[Handler], Handler]:
    """Wrap a handler returning ``(status, data)`` or an HttpResponse.

    ``methods`` may list several verbs; the handler receives ``request`` and the URL kwargs, and dispatches on
    ``request.method`` itself when it serves more than one.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                response = error_response(405, f"Method {request.method} is not allowed here.")
                response["Allow"] = ", ".join(methods)
                return response
            if login and not (request.user.is_authenticated and request.user.is_active):
                return error_response(401, "Authentication required: sign in or send an API token.")
            try:
                result = handler(request, *args, **kwargs)
            except ServiceError as exc:
                return error_response(exc.status, exc.message, exc.errors, exc.extra)
            except Http404:
                return error_response(404, "Not found.")
            except PermissionDenied:
                return error_response(403, "You may not do that here.")
            if isinstance(result, HttpResponseBase):
                return result
            status, data = result
            return JsonResponse(data, status=status, safe=False)

        view.api_methods = methods  # type: ignore[attr-defined]
        return view

    return decorate
