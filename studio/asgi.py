"""ASGI entry point: Django for HTTP (bodies size-limited, views on a few long-lived threads:
``studio/web_threads.py``), Channels for websockets (origin-checked, session or token auth)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

from studio.web_threads import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from generation.routing import websocket_urlpatterns  # noqa: E402
from studio.auth import WebsocketOriginMiddleware, WebsocketTokenAuthMiddleware  # noqa: E402
from studio.body_limits import BodyLimitMiddleware, guard_daphne  # noqa: E402

# Bodies over a route's limit are refused as they arrive: by daphne itself when it serves us, and by the
# middleware under any ASGI server.
guard_daphne()
http_app = BodyLimitMiddleware(
    ASGIStaticFilesHandler(django_asgi_app) if settings.STUDIO_SERVE_STATIC else django_asgi_app
)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": WebsocketOriginMiddleware(
            WebsocketTokenAuthMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)
