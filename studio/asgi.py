"""ASGI entry point: Django for HTTP, Channels for websockets (origin-checked, session or token auth)."""

import os

from django.core.asgi import get_asgi_application

from studio import daphne_bodies  # noqa: F401 - daphne passes bodies to Django unparsed

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from generation.routing import websocket_urlpatterns  # noqa: E402
from studio.auth import WebsocketOriginMiddleware, WebsocketTokenAuthMiddleware  # noqa: E402

http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.STUDIO_SERVE_STATIC else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": WebsocketOriginMiddleware(
            WebsocketTokenAuthMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)
