"""Every URL × every token scope, the way test_url_matrix walks every URL × role.

Each URL (and each further method) is classified here: a page, which never takes a token (the header is
ignored, so the request is anonymous); an open URL (health checks); or the scope a token needs. Root, a site
admin whom no role limits, calls each with a token of each scope: a scope that covers the URL gets what the
role matrix says an admin gets, a smaller one gets 403 naming the scope needed. A URL added to the studio
fails ``test_every_url_has_a_scope`` until it is classified here.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from studio import services
from studio.auth import required_scope
from studio.models import ApiToken
from tests.unit.test_url_matrix import MATRIX, MORE_METHODS, WEBSOCKETS, build_path, http_patterns

SCOPES = ["read", "generate", "admin"]
PAGE, OPEN = "page", "open"

READ = [
    "api-openapi", "api-me", "api-me-quota", "api-me-notifications", "api-models", "api-project-assets",
    "api-project-export", "api-job", "api-asset", "api-asset-image", "api-asset-thumbnail", "api-asset-mask",
    "api-asset-control-map",
    "api-asset-reviews", "api-board", "api-style", "api-not-found", "api-root", "api-credentials-root",
]  # fmt: skip
GENERATE = [
    "api-projects", "api-project-members", "api-project-member", "api-project-jobs", "api-project-uploads",
    "api-job-cancel", "api-asset-review", "api-asset-submit", "api-project-boards", "api-board-items",
    "api-asset-tags", "api-asset-favourite", "api-asset-comments", "api-project", "api-verify",
    "api-project-styles", "api-style-copy",
]  # fmt: skip
ADMIN = [
    "api-admin-users", "api-admin-user-quota", "api-admin-user-deactivate", "api-admin-audit",
    "api-admin-workers", "api-admin-annotators", "api-admin-annotator",
    "api-project-quota",  # only site admins set a project's quota
]  # fmt: skip
OPEN_URLS = ["healthz", "readyz"]
# The Prometheus scrape takes its own bearer token (STUDIO_METRICS_TOKEN), never a user's: a user's token
# there is a wrong scrape token, answered as an unknown page.
SCRAPE = "scrape"
# The AUTOMATIC1111 API takes tokens only; what root's token gets there (the role matrix, walked with
# sessions, expects 401 throughout). txt2img and img2img name no project here: 400 saying how to name one.
SDAPI_WITH_A_TOKEN = {
    "sdapi-txt2img": 400, "sdapi-img2img": 400, "sdapi-progress": 200, "sdapi-interrupt": 200,
    "sdapi-skip": 200, "sdapi-sd-models": 200, "sdapi-samplers": 200, "sdapi-schedulers": 200,
    "sdapi-upscalers": 200, "sdapi-loras": 200, "sdapi-options": 200, "sdapi-png-info": 400,
    "sdapi-memory": 200, "sdapi-scripts": 200, "sdapi-sd-vae": 200, "sdapi-prompt-styles": 200,
    "sdapi-refresh": 200, "sdapi-openapi": 200, "sdapi-not-served": 404,
}  # fmt: skip

# (name, method) → what a token needs there
CLASSIFIED: dict[tuple[str, str], str] = {
    **{(name, MATRIX[name][0]): "read" for name in READ},
    **{(name, MATRIX[name][0]): "generate" for name in GENERATE},
    **{(name, MATRIX[name][0]): "admin" for name in ADMIN},
    **{(name, MATRIX[name][0]): OPEN for name in OPEN_URLS},
    **{
        (name, MATRIX[name][0]): "read" if MATRIX[name][0] == "GET" else "generate"
        for name in SDAPI_WITH_A_TOKEN
    },
    **{
        (name, method): PAGE
        for name, (method, *_rest) in MATRIX.items()
        if not name.startswith(("api-", "sdapi-")) and name not in OPEN_URLS and name != "metrics"
    },
    ("metrics", "GET"): SCRAPE,
    ("api-asset", "DELETE"): "generate",
    ("api-asset-comments", "GET"): "read",
    ("api-project-boards", "GET"): "read",
    ("api-board", "DELETE"): "generate",
    ("api-board-items", "DELETE"): "generate",
    ("api-asset-tags", "DELETE"): "generate",
    ("api-asset-favourite", "DELETE"): "generate",
    ("manage-models", "POST"): PAGE,
    ("api-admin-annotators", "POST"): "admin",
    ("api-project-styles", "GET"): "read",
    ("api-style", "PATCH"): "generate",
    ("api-style", "DELETE"): "generate",
    ("project-styles", "POST"): PAGE,
    ("style", "POST"): PAGE,
}

CALLS = {
    **{(name, method): (kwargs, body, expected) for name, (method, kwargs, body, expected) in MATRIX.items()},
    **MORE_METHODS,
}


def test_every_url_has_a_scope():
    assert sorted(set(CALLS) - set(CLASSIFIED)) == [], "classify the new URL's scope here"
    assert sorted(set(CLASSIFIED) - set(CALLS)) == [], "the table names URLs that no longer exist"


def test_the_rule_agrees_with_the_table():
    """The middleware's one rule (method and path) gives each API URL the scope this table expects."""
    values = {"job": "j", "asset": "a", "board": "1", "alice_token": "1", "style": "1"}
    for (name, method), scope in CLASSIFIED.items():
        if scope in (PAGE, OPEN, SCRAPE):
            continue
        path = build_path(http_patterns()[name], CALLS[(name, method)][0], values)
        assert required_scope(method, path) == scope, f"{method} {path}"


def test_the_rule_for_the_automatic1111_api():
    assert required_scope("GET", "/sdapi/v1/sd-models") == "read"
    assert required_scope("POST", "/sdapi/v1/txt2img") == "generate"
    assert required_scope("POST", "/api/v1/admin/users/bob/deactivate") == "admin"
    assert required_scope("PUT", "/api/v1/projects/poster/quota") == "admin"
    assert required_scope("GET", "/api/v1/projects/poster/quota") == "read"


def covers(scope: str, needed: str) -> bool:
    return SCOPES.index(scope) >= SCOPES.index(needed)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize(("name", "method"), sorted(CLASSIFIED))
def test_url_with_a_token_of_each_scope(world, name, method, scope):
    team, values = world
    kwargs, body, expected = CALLS[(name, method)]
    _, token = services.do_create_token(team["root"], "matrix", scope=scope)
    path = build_path(http_patterns()[name], kwargs, values)
    client = Client()
    send = getattr(client, method.lower())
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if method == "GET":
        response = send(path, **auth)
    elif name.startswith(("api", "sdapi")):
        data = json.dumps(body) if body is not None else None
        response = send(path, data=data, content_type="application/json", **auth)
    else:
        response = send(path, data=body or {}, **auth)
    needed = CLASSIFIED[(name, method)]
    if needed == SCRAPE:
        assert response.status_code == 404, f"{method} {path} with a {scope} token"
    elif needed in (PAGE, OPEN):
        # The token is ignored: the request is anonymous, as the role matrix's first column says.
        assert response.status_code == expected["anonymous"], f"{method} {path} with a {scope} token"
    elif covers(scope, needed):
        wanted = SDAPI_WITH_A_TOKEN.get(name, expected["admin"])
        assert response.status_code == wanted, f"{method} {path} with a {scope} token"
    else:
        assert response.status_code == 403, f"{method} {path} with a {scope} token"
        assert response.json()["error"] == (
            f"This API token has the {scope} scope; {method} {path} needs a token with the {needed} scope. "
            "Create one on your Account page."
        )


# Sockets stream what their caller may read, so a token of any scope opens them, but the workers' socket: it
# tells what only the admin API tells (GET /api/v1/admin/workers), so it needs the admin scope as that does.
ADMIN_SOCKETS = {"ws-workers"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("name", sorted(WEBSOCKETS))
def test_websockets_take_a_token_of_any_scope(world, name, scope):
    from generation.routing import websocket_urlpatterns
    from studio.asgi import application

    team, values = world
    kwargs, _ = WEBSOCKETS[name]
    route = next(str(p.pattern) for p in websocket_urlpatterns if p.name == name)
    if name in ADMIN_SOCKETS:
        _, token = services.do_create_token(team["root"], "ws", scope=scope)
    else:
        _, token = services.do_create_token(
            team["alice"], "ws", scope=scope if scope != "admin" else "generate"
        )
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())]

    async def attempt() -> bool:
        ws = WebsocketCommunicator(application, build_path(route, kwargs, values), headers=headers)
        connected, _ = await ws.connect()
        if connected:
            await ws.disconnect()
        return connected

    assert asyncio.run(attempt()) == (name not in ADMIN_SOCKETS or covers(scope, "admin"))
    assert ApiToken.objects.get(name="ws").last_used_at is not None
