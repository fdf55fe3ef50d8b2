"""The Redis cache's serializer: JSON, never pickle.

Django's Redis cache pickles what it stores, so anyone able to write a key (a misconfigured Redis, a
neighbour on its network) could run code in every process that reads it: the web server reads preview keys,
every GPU worker reads a job's cancel flag on each step. JSON only ever turns bytes into plain data. Values
must be JSON types (dicts, lists, strings, numbers, booleans, None); anything else is refused with TypeError
when it is stored, so a value never comes back as something other than what was put in. An entry that is
not JSON (planted, or left by an older version) reads as missing, and is logged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


class JSONSerializer:
    """Drop-in for ``django.core.cache.backends.redis.RedisSerializer``. Plain ints are stored as Redis
    integers, as Django's serializer does, so ``incr``/``decr`` keep working."""

    def __init__(self, protocol: Any = None) -> None:
        pass

    def dumps(self, obj: Any) -> bytes | int:
        if type(obj) is int:
            return obj
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return json.loads(data)
        except ValueError:  # UnicodeDecodeError included
            logger.warning("Ignoring a cache entry that is not JSON (%d bytes)", len(data))
            return None
