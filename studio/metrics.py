"""``/metrics`` in Prometheus's text format (prometheus-client), for the studio's IT.

Request counters live in each web process; with several daphne processes per host they share
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), so any one of them answers for all.
Apps add collectors that read the truth at scrape time (jobs by state from the database, worker state
from Redis) with ``register_collector``. Not public: a scraper sends ``STUDIO_METRICS_TOKEN`` as a bearer
token, or connects straight to a web process from one of ``STUDIO_METRICS_ALLOW``'s networks.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .auth import bearer_from_header

logger = logging.getLogger(__name__)

# The process's own metrics (every web process, and tests); scrapes read the multiprocess files instead
# when several processes share a directory.
LOCAL = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "studio_http_requests",
    "HTTP requests answered, by method, URL name and status class.",
    ["method", "route", "status"],
    registry=LOCAL,
)
HTTP_DURATION = Histogram(
    "studio_http_request_duration_seconds",
    "Time to answer an HTTP request (the view and middleware; streamed bodies not included).",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
    registry=LOCAL,
)
WEBSOCKETS = Gauge(
    "studio_websocket_connections",
    "Open websocket connections, by stream (job or project).",
    ["stream"],
    multiprocess_mode="livesum",
    registry=LOCAL,
)

_collectors: list[Callable[[], Collector]] = []


def register_collector(factory: Callable[[], Collector]) -> None:
    """Add a collector made fresh for every scrape (apps call this from ``AppConfig.ready``)."""
    if factory not in _collectors:
        _collectors.append(factory)


def websocket_opened(stream: str) -> None:
    WEBSOCKETS.labels(stream).inc()


def websocket_closed(stream: str) -> None:
    WEBSOCKETS.labels(stream).dec()


class RequestMetricsMiddleware:
    """Counts every answered request by its URL name (never by its path: one series per route, whatever
    the ids in the URL)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.view_name if match else "") or "unmatched"
        try:
            HTTP_DURATION.labels(route).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(request.method or "", route, f"{response.status_code // 100}xx").inc()
        except Exception:  # a full disk under the metrics dir must never fail a request
            logger.warning("Could not record request metrics", exc_info=True)
        return response


def render() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_LocalCollector())
    for factory in _collectors:
        registry.register(factory())
    return generate_latest(registry)


class _LocalCollector(Collector):
    def collect(self) -> Iterable[Any]:
        return LOCAL.collect()


def may_scrape(request: HttpRequest) -> bool:
    """A valid ``STUDIO_METRICS_TOKEN`` bearer, or a direct connection from an allowed network.

    A request relayed by the proxy (it carries X-Forwarded-For) always needs the token: the proxy's own
    address would otherwise let everyone in, and the header itself is the client's to write."""
    token = settings.STUDIO_METRICS_TOKEN
    offered = bearer_from_header(request.headers.get("Authorization"))
    if offered is not None:
        return bool(token) and hmac.compare_digest(offered.encode(), token.encode())
    if request.headers.get("X-Forwarded-For"):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for network in settings.STUDIO_METRICS_ALLOW:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            logger.warning("STUDIO_METRICS_ALLOW holds %r, which is not a network", network)
    return False


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The scrape. Anyone else gets the same 404 as for any unknown page."""
    if not may_scrape(request):
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
