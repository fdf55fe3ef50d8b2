"""The Redis cache backend: Django's, with one client and connection pool per process.

Django keeps a cache object per thread and per asyncio context, and its Redis backend gives each object a
connection pool of its own. Under ASGI every request and every websocket runs in a context of its own, so
each one that touched the cache opened a new connection to Redis (a TCP handshake, ``AUTH`` and a health
check) and left the old one for the garbage collector. Here every cache object of a process shares one
client, whose pool hands connections to whichever thread asks (redis-py's pool is thread-safe and starts
afresh in a forked child).
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.functional import cached_property


class RedisCache(DjangoRedisCache):
    # Set by Django's __init__ (not in its type stubs).
    _servers: list[str]
    _options: dict[str, Any]
    _class: type[RedisCacheClient]

    _clients: ClassVar[dict[str, RedisCacheClient]] = {}
    _clients_lock: ClassVar[threading.Lock] = threading.Lock()

    @cached_property
    def _cache(self) -> Any:
        key = repr((self._servers, sorted(self._options.items())))
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._class(self._servers, **self._options)
        return client
