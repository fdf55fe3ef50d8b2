"""The typed boundary the studio's JSON APIs stand on: django-ninja operations over pydantic v2 types.

Each request body, query string and response is a declared type (``*/schemas.py``); ninja validates requests
against it and generates the OpenAPI schema from the same declaration, so a limit is written once. This
module makes those answers speak the studio's contract (shared/API.md):

* every error is JSON ``{"error": sentence, "errors": {field: [sentence, ...]}}`` with a fitting status,
  and pydantic's findings are turned into the same sentences the forms show ("Must be between 1 and 150.");
* an operation's **guard** decides who may touch the object in its path *before* the body is read, so a
  caller who may not see a project gets 404 whatever they send, and one who may not change it gets 403;
* callers are the signed-in user of a session (CSRF checked on writes) or of an API token.
"""

from __future__ import annotations

import json
import logging
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

import pydantic
from django.conf import settings
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI, Router
from ninja.errors import AuthenticationError, HttpError, ValidationError, ValidationErrorContext
from ninja.parser import Parser
from ninja.security.base import AuthBase
from ninja.utils import check_csrf
from pydantic import BaseModel, ConfigDict

from .errors import InvalidInput, ServiceError
from .fields import Messages

logger = logging.getLogger(__name__)

NOT_SIGNED_IN = "Authentication required: sign in or send an API token."
NOT_JSON = "The request body is not valid JSON."
NOT_AN_OBJECT = "The request body must be a JSON object."
NO_BODY = "Send a JSON object as the request body."


# --- the shapes every answer shares --


class ErrorOut(BaseModel):
    """Every error answer. ``errors`` names the invalid fields; some answers add facts (a quota refusal
    carries ``quota``: used, limit and reset)."""

    model_config = ConfigDict(extra="allow")
    error: str
    errors: dict[str, list[str]] | None = None


def error_response(
    status: int, message: str, errors: dict[str, list[str]] | None = None, extra: dict | None = None
) -> JsonResponse:
    body: dict[str, Any] = {**(extra or {}), "error": message}
    if errors:
        body["errors"] = errors
    return JsonResponse(body, status=status)


def no_content() -> HttpResponse:
    """204: done, nothing to say (no body, so no content type either)."""
    return HttpResponse(status=204)


def answers(ok: dict[int, Any], *errors: int) -> dict[Any, Any]:
    """An operation's ``response=``: its success shapes and the error statuses it can give.

    400 (a parameter or body that does not validate), 401 (no or bad credentials) and 403 (a token without
    the scope the call needs) can come from every operation, so they are always listed."""
    statuses = frozenset({400, 401, 403, *errors})
    return {**ok, statuses: ErrorOut}


# --- who is calling --


class ApiToken(AuthBase):
    """``Authorization: Bearer <token>``. The token middleware (studio/auth.py) has already checked it and
    answered 401 for a bad one; here it only names the scheme in the schema."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    def __call__(self, request: HttpRequest) -> Any:
        if getattr(request, "api_token", None) is not None and request.user.is_active:
            return request.user
        return None


class SessionCookie(AuthBase):
    """The browser's Django session, with Django's CSRF check on every unsafe request."""

    openapi_type = "apiKey"
    openapi_in = "cookie"
    openapi_name = settings.SESSION_COOKIE_NAME

    def __call__(self, request: HttpRequest) -> Any:
        if getattr(request, "api_token", None) is not None:
            return None
        user = request.user
        if not (user.is_authenticated and user.is_active):
            return None
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE") and check_csrf(request) is not None:
            raise HttpError(403, "CSRF check failed: reload the page and try again.")
        return user


SIGNED_IN = [ApiToken(), SessionCookie()]


def signed_in(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active)


# --- guards: the permission decision before anything else --

Guard = Callable[..., Any]


def guarded(request: HttpRequest) -> Any:
    """What the operation's guard resolved from the path (a project, a job, an asset …)."""
    return request._studio_guarded  # type: ignore[attr-defined]


def _guard_run(guard: Guard) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Wrap an operation's ``run`` so that the caller is known and the guard has decided before ninja reads
    any parameter. ``guard(request, **path_kwargs)`` returns the object the path names, raising Http404
    (not visible) or NotAllowed (visible, but not theirs to change)."""

    def decorate(run: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        def guarded_run(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if not signed_in(request):
                return run.__self__.api.error(401, NOT_SIGNED_IN)  # type: ignore[attr-defined]
            try:
                request._studio_guarded = guard(request, **kwargs)  # type: ignore[attr-defined]
            except Exception as exc:  # answered like any error of the operation
                api: StudioAPI = run.__self__.api  # type: ignore[attr-defined]
                return api.on_exception(request, exc)
            return run(request, **kwargs)

        return guarded_run

    return decorate


def _funcs(path_view: Any) -> list[Callable]:
    return [operation.view_func for operation in path_view.operations]


class StudioRouter(Router):
    """A ninja router whose operations may name a ``guard``."""

    def add_api_operation(self, path: str, methods: list[str], view_func: Callable, **kwargs: Any) -> None:
        guard = kwargs.pop("guard", None)
        super().add_api_operation(path, methods, view_func, **kwargs)
        # Every method of a path shares the path's URL name, so one name reverses to it.
        path_view = next(view for view in self.path_operations.values() if view_func in _funcs(view))
        for operation in path_view.operations:
            operation.url_name = path_view.url_name or operation.url_name
        if guard is not None:
            operation = view_func._ninja_operation  # type: ignore[attr-defined]
            operation.run = _guard_run(guard)(operation.run)
            operation._run_decorators = [*getattr(operation, "_run_decorators", []), _guard_run(guard)]

    def api_operation(self, methods: list[str], path: str, **kwargs: Any) -> Callable:
        def decorator(view_func: Callable) -> Callable:
            self.add_api_operation(path, methods, view_func, **kwargs)
            return view_func

        return decorator

    def get(self, path: str, **kwargs: Any) -> Callable:
        return self.api_operation(["GET"], path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable:
        return self.api_operation(["POST"], path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable:
        return self.api_operation(["PUT"], path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable:
        return self.api_operation(["PATCH"], path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable:
        return self.api_operation(["DELETE"], path, **kwargs)


# --- reading bodies --


class BodyNotJson(ValueError):
    pass


def _json_number(text: str) -> int | float:
    """JSON has one kind of number: ``20.0`` is the whole number 20, as JSON Schema's "integer" counts it."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


class JsonParser(Parser):
    """JSON bodies. NaN and Infinity are read as numbers, so the field that holds one is named in the
    answer ("Enter a number.") rather than the whole body being refused."""

    def parse_body(self, request: HttpRequest) -> Any:
        try:
            return json.loads(request.body, parse_float=_json_number)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BodyNotJson(str(exc)) from exc


# --- turning pydantic's findings into the studio's sentences --


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types an annotation may hold (Optional, unions and Annotated taken apart)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[Any] = []
        for arg in typing.get_args(annotation):
            found += _unwrap(arg)
        return found
    return [annotation]


def _walk(
    root: Any, loc: tuple[Any, ...]
) -> tuple[list[Any], pydantic.fields.FieldInfo | None, type[BaseModel] | None]:
    """Follow an error's ``loc`` through the declared types. Returns the parts a client would name (fields
    and list positions; a tagged union's tag is not one), the declaration of the field it ends at, and for
    a key no type declares, the model that refused it."""
    current = _unwrap(root)
    parts: list[Any] = []
    info: pydantic.fields.FieldInfo | None = None
    for index, part in enumerate(loc):
        models = [t for t in current if isinstance(t, type) and issubclass(t, BaseModel)]
        tagged = [m for m in models if getattr(m, "union_tag", None) == part]
        owner = next((m for m in models if isinstance(part, str) and part in m.model_fields), None)
        if len(models) > 1 and tagged and index < len(loc) - 1:
            # A tagged union's errors start with the member's tag, also where the tag is a field's name too
            # (the "variation" mode has a "variation" field).
            current = tagged
        elif owner is not None:
            info = owner.model_fields[part]
            parts.append(part)
            current = _unwrap(info.annotation)
        elif isinstance(part, int):
            parts.append(part)
            items = [
                arg
                for t in current
                if typing.get_origin(t) in (list, tuple, set, frozenset)
                for a in typing.get_args(t)
                for arg in _unwrap(a)
            ]
            current = items or current
        elif index == len(loc) - 1:  # a key no type declares: an unknown field
            parts.append(part)
            return parts, None, models[0] if models else None
        else:  # a tagged union's tag: go on in the member it names
            current = [m for m in models if getattr(m, "union_tag", None) == part] or current
    return parts, info, None


def _metadata(info: pydantic.fields.FieldInfo | None) -> list[Any]:
    """A field's constraints and Messages, also those inside an optional type (``Int(1, 150) | None``)."""
    if info is None:
        return []
    found: list[Any] = []
    stack: list[Any] = [*info.metadata, info.annotation]
    while stack:
        item = stack.pop()
        origin = typing.get_origin(item)
        if origin is typing.Annotated:
            stack += list(typing.get_args(item))
        elif origin in (typing.Union, types.UnionType):
            stack += list(typing.get_args(item))
        elif isinstance(item, pydantic.fields.FieldInfo):
            stack += item.metadata
        elif not isinstance(item, type) and origin is None:
            found.append(item)
    return found


def _bounds(info: pydantic.fields.FieldInfo | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in _metadata(info):
        for name in ("ge", "gt", "le", "lt", "max_length", "min_length", "multiple_of"):
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
    return found


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range(bounds: dict[str, Any]) -> str:
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if low is not None and high is not None:
        return f"Must be between {_number(low)} and {_number(high)}."
    if low is not None:
        return f"Must be at least {_number(low)}." if "ge" in bounds else f"Must be more than {_number(low)}."
    return f"Must be at most {_number(high)}." if "le" in bounds else f"Must be less than {_number(high)}."


def _choices(expected: str) -> str:
    """pydantic lists choices as ``'a', 'b' or 'c'``; the studio writes ``a, b, c``."""
    parts = expected.replace(" or ", ", ").split(",")
    return ", ".join(p.strip().strip("'") for p in parts if p.strip())


SIMPLE = {
    "missing": "This field is required.",
    "extra_forbidden": "Unknown field.",
    "int_type": "Enter a whole number.",
    "int_parsing": "Enter a whole number.",
    "int_from_float": "Enter a whole number.",
    "float_type": "Enter a number.",
    "float_parsing": "Enter a number.",
    "finite_number": "Enter a number.",
    "string_type": "Enter text.",
    "string_unicode": "Enter text.",
    "bool_type": "Enter true or false.",
    "bool_parsing": "Enter true or false.",
    "list_type": "Send a list.",
    "tuple_type": "Send a list.",
    "set_type": "Send a list.",
    "dict_type": "Send an object.",
    "model_type": "Send an object.",
    "model_attributes_type": "Send an object.",
    "uuid_type": "Not a valid id.",
    "uuid_parsing": "Not a valid id.",
    "date_type": "Enter a date as YYYY-MM-DD.",
    "date_parsing": "Enter a date as YYYY-MM-DD.",
    "date_from_datetime_parsing": "Enter a date as YYYY-MM-DD.",
    "datetime_type": "Enter a date and time in ISO 8601 (2026-03-07T09:05:00Z).",
    "datetime_parsing": "Enter a date and time in ISO 8601 (2026-03-07T09:05:00Z).",
    "datetime_from_date_parsing": "Enter a date and time in ISO 8601 (2026-03-07T09:05:00Z).",
    "string_pattern_mismatch": "Not in the expected form.",
}


def sentence(
    error: dict[str, Any],
    info: pydantic.fields.FieldInfo | None,
    refused_by: type[BaseModel] | None = None,
) -> str:
    """One pydantic error as the sentence a person reads."""
    kind, ctx = error["type"], error.get("ctx") or {}
    for item in _metadata(info):
        if isinstance(item, Messages) and kind in item.by_type:
            return item.by_type[kind]
    if kind == "extra_forbidden" and refused_by is not None:
        loc = error.get("loc") or ("",)
        return getattr(refused_by, "unknown_fields", {}).get(loc[-1], "Unknown field.")
    if kind in SIMPLE:
        return SIMPLE[kind]
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return _range(_bounds(info) or ctx)
    if kind == "multiple_of":
        return f"Must be a multiple of {_number(ctx.get('multiple_of'))}."
    if kind == "string_too_long":
        return f"At most {ctx.get('max_length')} characters (this has {len(str(error.get('input', '')))})."
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "This field is required."
        return f"At least {ctx.get('min_length')} characters."
    if kind == "too_long":
        return f"At most {ctx.get('max_length')} at once."
    if kind == "too_short":
        return f"At least {ctx.get('min_length')}."
    if kind in ("literal_error", "enum"):
        return f"Choose one of: {_choices(str(ctx.get('expected', '')))}."
    if kind == "union_tag_invalid":
        return f"Choose one of: {_choices(str(ctx.get('expected_tags', '')))}."
    if kind == "value_error":
        return str(ctx.get("error") or error.get("msg", "")).removeprefix("Value error, ")
    # A PydanticCustomError raised by a studio validator carries the studio's own sentence.
    return str(error.get("msg") or "Invalid value.")


def _path(parts: list[Any]) -> str:
    """Where inside a field an error is: ``item 2, weight``."""
    return ", ".join(f"item {part + 1}" if isinstance(part, int) else str(part) for part in parts)


def explain(errors: Iterable[Any], root: Any, *, strip_first: bool = False) -> dict[str, list[str]]:
    """pydantic's errors keyed by the field a client sent: ``{"steps": ["Must be between 1 and 150."]}``.
    A nested field's sentence says where it is (``"loras": ["Item 2, weight: must be between -2 and 2."]``).
    ``strip_first`` drops the name of the ninja parameter that holds a declared type."""
    found: dict[str, list[str]] = {}
    for error in errors:
        parts, info, refused_by = _walk(root, tuple(error.get("loc", ())))
        if strip_first and parts and _is_model_param(root, parts[0]):
            parts = parts[1:]
        ctx = error.get("ctx") or {}
        if not parts and error["type"] == "missing":
            key, text = "body", NO_BODY
        elif not parts and not isinstance(error.get("input"), dict) and len(error.get("loc", ())) <= 1:
            key, text = "body", NOT_AN_OBJECT
        elif not parts:
            # A model-level error (a tagged union's unknown tag) names its field in its context.
            key, text = str(ctx.get("field", "body")), sentence(error, info, refused_by)
        else:
            key, text = str(parts[0]), sentence(error, info, refused_by)
            if len(parts) > 1:
                where = _path(parts[1:])
                text = f"{where[0].upper()}{where[1:]}: {text[0].lower()}{text[1:]}"
        if text not in found.setdefault(key, []):
            found[key].append(text)
    return found


def _is_model_param(root: Any, name: Any) -> bool:
    """Whether a ninja parameter holds a whole declared type (a body, a query schema) whose fields are the
    names a client sent."""
    fields = getattr(root, "model_fields", {})
    if name not in fields:
        return False
    return any(isinstance(t, type) and issubclass(t, BaseModel) for t in _unwrap(fields[name].annotation))


def invalid(errors: dict[str, list[str]]) -> InvalidInput:
    if list(errors) == ["body"]:
        return InvalidInput(errors["body"][0])
    return InvalidInput("Some fields are invalid: " + ", ".join(sorted(errors)) + ".", errors)


def validate(model: Any, data: Any) -> Any:
    """``data`` as ``model`` (a pydantic model or any type pydantic validates), or InvalidInput in the
    studio's words. The HTML forms use this, so a page and the API never disagree about a value."""
    try:
        return pydantic.TypeAdapter(model).validate_python(data)
    except pydantic.ValidationError as exc:
        raise invalid(explain(exc.errors(include_url=False), model)) from exc


# --- the API --


class StudioAPI(NinjaAPI):
    """A NinjaAPI answering in the studio's error shape. Its schema's paths are relative to its one
    server (``servers=[{"url": "/api/v1"}]``), as clients join them."""

    def __init__(self, *, detail: bool = False, **kwargs: Any) -> None:
        # ``detail``: errors also carry the sentence as ``detail``, where FastAPI's clients look for it.
        self.detail = detail
        kwargs.setdefault("auth", SIGNED_IN)
        kwargs.setdefault("parser", JsonParser())
        kwargs.setdefault("docs_url", None)
        super().__init__(**kwargs)
        self.add_exception_handler(ValidationError, self._invalid)  # type: ignore[arg-type]
        self.add_exception_handler(ServiceError, self._service_error)  # type: ignore[arg-type]
        self.add_exception_handler(AuthenticationError, self._unauthenticated)  # type: ignore[arg-type]
        self.add_exception_handler(HttpError, self._http_error)  # type: ignore[arg-type]
        self.add_exception_handler(Http404, lambda request, exc: self.error(404, "Not found."))
        self.add_exception_handler(
            PermissionDenied, lambda request, exc: self.error(403, "You may not do that here.")
        )
        self.add_exception_handler(MultiPartParserError, self._unreadable)  # type: ignore[arg-type]
        self.add_exception_handler(SuspiciousOperation, self._unreadable)  # type: ignore[arg-type]

    def error(
        self, status: int, message: str, errors: dict[str, list[str]] | None = None, extra: dict | None = None
    ) -> JsonResponse:
        if self.detail:
            extra = {**(extra or {}), "detail": message}
        return error_response(status, message, errors, extra)

    def _unreadable(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        return self.error(
            400, "The request body could not be read; send it as JSON or as multipart form data."
        )

    def validation_error_from_error_contexts(
        self, error_contexts: list[ValidationErrorContext]
    ) -> ValidationError:
        errors: dict[str, list[str]] = {}
        for context in error_contexts:
            model = context.model
            found = explain(
                context.pydantic_validation_error.errors(include_url=False), model, strip_first=True
            )
            for key, messages in found.items():
                for message in messages:
                    if message not in errors.setdefault(key, []):
                        errors[key].append(message)
        return ValidationError([errors])

    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: Any = None) -> Any:
        return super().get_openapi_schema(path_prefix="", path_params=path_params)

    def _invalid(self, request: HttpRequest, exc: ValidationError) -> HttpResponse:
        errors: dict[str, list[str]] = exc.errors[0] if exc.errors and isinstance(exc.errors[0], dict) else {}
        refusal = invalid(errors)
        return self.error(400, refusal.message, refusal.errors)

    def _service_error(self, request: HttpRequest, exc: ServiceError) -> HttpResponse:
        return self.error(exc.status, exc.message, exc.errors, exc.extra)

    def _unauthenticated(self, request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return self.error(401, NOT_SIGNED_IN)

    def _http_error(self, request: HttpRequest, exc: HttpError) -> HttpResponse:
        if isinstance(exc.__cause__, BodyNotJson):
            return self.error(400, NOT_JSON)
        if isinstance(exc.__cause__, (MultiPartParserError, SuspiciousOperation)):
            return self._unreadable(request, exc)
        return self.error(exc.status_code, exc.message)


def method_not_allowed(response: HttpResponse, request: HttpRequest) -> HttpResponse:
    """ninja answers an unlisted method with a bare 405; the APIs answer every error as JSON."""
    allowed = response.get("Allow", "")
    answer = error_response(405, f"Method {request.method} is not allowed here.")
    if allowed:
        answer["Allow"] = allowed
    return answer


# What an answer Django gave outside any operation means, for the APIs' callers.
OUTSIDE_SENTENCES = {
    400: "The request could not be read; send JSON, or multipart form data for uploads.",
    403: "Refused: a browser's writes need the page's CSRF token (scripts send an API token instead).",
    404: "Not found.",
    413: "The request body is too large.",
}


class ApiErrorsMiddleware:
    """Under the JSON APIs, an answer that ninja or Django gives outside an operation (a method no operation
    takes, a body Django's own middleware could not parse) is JSON in the studio's shape too."""

    prefixes: Iterable[str] = ("/api/", "/sdapi/")

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and request.path.startswith(tuple(self.prefixes))
            and not response.get("Content-Type", "").startswith("application/json")
            and not response.streaming
        ):
            if response.status_code == 405:
                return method_not_allowed(response, request)
            if response.status_code in OUTSIDE_SENTENCES:
                return error_response(response.status_code, OUTSIDE_SENTENCES[response.status_code])
        return response


def schema_router(api: NinjaAPI, url_name: str = "api-openapi") -> Router:
    """``GET openapi.json``: the schema generated from the API's declared types, for anyone signed in."""
    router = Router()

    @router.get("/openapi.json", include_in_schema=False, url_name=url_name)
    def openapi(request: HttpRequest) -> HttpResponse:
        return JsonResponse(api.get_openapi_schema())

    return router
