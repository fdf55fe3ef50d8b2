"""A URLconf for tests/unit/test_web_threads.py: views that say which thread ran them."""

from __future__ import annotations

import asyncio
import threading

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

# Set by the test: the async view waits for it.
release = asyncio.Event()


def where(request: HttpRequest) -> JsonResponse:
    connection.ensure_connection()
    return JsonResponse({"thread": threading.current_thread().name, "connection": id(connection.connection)})


async def wait(request: HttpRequest) -> JsonResponse:
    await release.wait()
    return JsonResponse({"waited": True})


urlpatterns = [path("where/", where), path("wait/", wait)]
