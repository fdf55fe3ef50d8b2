"""Where a web process runs its synchronous code: on a few long-lived threads, not a new one per request.

Django's ASGI handler gives every request a thread of its own (asgiref's ``ThreadSensitiveContext``), so a
busy process runs as many threads as it has requests in flight. Under load that costs three ways, measured
with ``bench/web_load.py``:

* Dozens of runnable threads share one GIL with the event loop, which then answers websockets and sends
  finished responses late: requests queue unfairly and some wait past two seconds while most are quick.
* Each request opens a database connection and closes it at its end (persistent connections die with their
  thread), which is a noticeable share of a short page's time on SQLite and a TCP handshake on PostgreSQL.
* A thread is started and joined per request.

``StudioASGIHandler`` runs each request's synchronous code (middleware, the view, closing the response) on
one of ``STUDIO_WEB_THREADS`` lanes: single-thread executors that live as long as the process. A request
joins the lane with the fewest requests in flight and stays on it from start to end, so everything Django
expects of one thread per request still holds (its transaction, its connection). Each lane keeps its own
database connection open between requests (``CONN_MAX_AGE``).

Async views (the AUTOMATIC1111 API waiting for its images) keep Django's thread per request: the studio's
synchronous middleware wait in that thread for as long as the view runs, and a wait of a minute must not
hold one of the few lanes that every page shares.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, resolve


class Lanes:
    """A fixed set of single-thread executors, and how many requests each is serving now (counted on the
    event loop's thread, the only one that takes and gives back)."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("A web process needs at least one thread for its views.")
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"web-{i + 1}") for i in range(count)
        ]
        self.in_flight = [0] * count

    def take(self) -> int:
        """The index of the least busy lane (the first of equals), counted as one request busier."""
        index = min(range(len(self.in_flight)), key=self.in_flight.__getitem__)
        self.in_flight[index] += 1
        return index

    def give_back(self, index: int) -> None:
        self.in_flight[index] -= 1


class StudioASGIHandler(ASGIHandler):
    """Django's ASGI handler, with each request's synchronous code on one of a few long-lived threads."""

    _middleware_chain: Any  # set by load_middleware (not in Django's type stubs)

    def __init__(self, threads: int | None = None) -> None:
        super().__init__()
        self.lanes = Lanes(threads if threads is not None else settings.STUDIO_WEB_THREADS)

    def load_middleware(self, is_async: bool = False) -> None:
        """The middleware chain and the view run in one call on the request's thread. (Django's async chain
        returns to the event loop for each async-capable middleware below the studio's synchronous ones,
        and back: two more trips per request through a loop that is also serving every websocket.)"""
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        if _async_view(scope):
            async with ThreadSensitiveContext():  # its own thread, as Django gives every request
                await self.handle(scope, receive, send)
            return
        index = self.lanes.take()
        try:
            async with ThreadSensitiveContext(executor=self.lanes.executors[index]):
                await self.handle(scope, receive, send)
        finally:
            self.lanes.give_back(index)


def _async_view(scope: dict[str, Any]) -> bool:
    """Whether the request's URL leads to an async view (an unknown URL is answered by a sync one)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return _leads_to_async_view(settings.ROOT_URLCONF, path)


@lru_cache(maxsize=4096)
def _leads_to_async_view(urlconf: str, path: str) -> bool:
    try:
        return iscoroutinefunction(resolve(path, urlconf=urlconf).func)
    except Resolver404:
        return False


def get_asgi_application() -> StudioASGIHandler:
    """``django.core.asgi.get_asgi_application`` with the studio's handler."""
    import django

    django.setup(set_prefix=False)
    return StudioASGIHandler()
