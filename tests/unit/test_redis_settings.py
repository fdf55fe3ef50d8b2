"""Redis carries jobs, previews and cancel flags: nothing read from it is unpickled, and production will not
talk to a Redis that anyone on the network can write to."""

from __future__ import annotations

import json
import pickle
import threading

import pytest

from studio.cache_json import JSONSerializer
from studio.redis_cache import RedisCache
from studio.settings import redis_database, redis_url_has_password, redis_url_with_password
from tests.unit.test_settings import PRODUCTION, manage

KEY = "k" * 60
SHOW = (
    "from django.conf import settings as s; import json; print(json.dumps({"
    "'url': s.REDIS_URL, 'cache': s.CACHES['default'].get('OPTIONS', {}), "
    "'cache_backend': s.CACHES['default']['BACKEND'], "
    "'layer': s.CHANNEL_LAYERS['default']['CONFIG'], "
    "'broker_ssl': str(getattr(s, 'CELERY_BROKER_USE_SSL', ''))"
    "}))"
)


def show(**env: str):
    return manage("shell", "-v", "0", "-c", SHOW, **env)


class Exploit:
    """What an attacker would plant: unpickling it runs ``touch``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def test_the_cache_serializer_reads_json_and_never_unpickles(tmp_path):
    serializer = JSONSerializer()
    for value in ({"type": "preview", "step": 3, "image": "data:image/jpeg;base64,AA"}, [4, 10], True, "x"):
        assert serializer.loads(serializer.dumps(value)) == value
    assert serializer.dumps(7) == 7  # stored as a Redis integer, so incr() keeps working
    marker = tmp_path / "pwned"
    assert serializer.loads(pickle.dumps(Exploit(str(marker)))) is None  # reads as a missing entry
    assert not marker.exists()
    with pytest.raises(TypeError):
        serializer.dumps({"when": object()})


def test_with_redis_the_cache_uses_json_and_the_channel_layer_msgpack():
    shown = show(STUDIO_ENV="test", REDIS_URL="redis://127.0.0.1:6379/3")
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout)
    assert config["cache"]["serializer"] == "studio.cache_json.JSONSerializer"
    assert config["cache_backend"] == "studio.redis_cache.RedisCache"
    assert config["layer"]["serializer_format"] == "msgpack"
    # Pub/sub ignores the database number: the prefix carries it, so studios sharing a Redis stay apart.
    assert config["layer"]["prefix"] == "studio:ws:3"


def test_production_refuses_a_redis_url_without_a_password():
    env = {**PRODUCTION, "REDIS_URL": "redis://redis:6379/0", "STUDIO_SECRET_KEY": KEY}
    refused = manage("check", **env)
    assert refused.returncode != 0
    assert "REDIS_URL has no password" in refused.stderr
    assert "STUDIO_REDIS_INSECURE" in refused.stderr
    assert manage("check", **env, STUDIO_REDIS_INSECURE="true").returncode == 0
    assert manage("check", **{**env, "REDIS_URL": "redis://:s3cret@redis:6379/0"}).returncode == 0


def test_the_redis_password_can_come_from_a_secret_file(tmp_path):
    secret = tmp_path / "redis_password"
    secret.write_text("p@ss/word\n")
    env = {**PRODUCTION, "REDIS_URL": "redis://redis:6379/0", "STUDIO_SECRET_KEY": KEY}
    shown = show(**env, STUDIO_REDIS_PASSWORD_FILE=str(secret))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["url"] == "redis://:p%40ss%2Fword@redis:6379/0"


def test_rediss_urls_verify_the_servers_certificate_everywhere(tmp_path):
    env = {**PRODUCTION, "REDIS_URL": "rediss://:pw@redis:6380/0", "STUDIO_SECRET_KEY": KEY}
    shown = show(**env, STUDIO_REDIS_CA_FILE="/etc/studio/redis-ca.pem")
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout)
    tls = {"ssl_cert_reqs": "required", "ssl_ca_certs": "/etc/studio/redis-ca.pem"}
    assert tls.items() <= config["cache"].items()
    assert tls.items() <= config["layer"]["hosts"][0].items()
    assert "CERT_REQUIRED" in config["broker_ssl"] and "/etc/studio/redis-ca.pem" in config["broker_ssl"]


@pytest.mark.parametrize(
    ("url", "password", "expected"),
    [
        ("redis://redis:6379/0", "pw", "redis://:pw@redis:6379/0"),
        ("redis://app@redis:6379/0", "pw", "redis://app:pw@redis:6379/0"),
        ("redis://:mine@redis:6379/0", "pw", "redis://:mine@redis:6379/0"),
        ("unix:///run/redis.sock?db=1", "pw", "unix:///run/redis.sock?db=1&password=pw"),
        ("redis://redis:6379/0", "", "redis://redis:6379/0"),
    ],
)
def test_a_password_is_put_into_the_url_unless_it_has_one(url, password, expected):
    assert redis_url_with_password(url, password) == expected
    assert redis_url_has_password(expected) == bool(password or "mine" in url)


@pytest.mark.parametrize(
    ("url", "number"),
    [("redis://r:6379/7", 7), ("redis://r:6379", 0), ("rediss://:p@r/12", 12), ("unix:///s.sock?db=4", 4)],
)
def test_the_database_number_is_read_from_the_url(url, number):
    assert redis_database(url) == number


def test_every_cache_object_of_a_process_shares_one_redis_client():
    """Django makes a cache object per thread and per asyncio context (so per request and per websocket):
    they must share one connection pool, not open a connection each."""
    params = {"OPTIONS": {"serializer": "studio.cache_json.JSONSerializer"}}
    first = RedisCache("redis://127.0.0.1:6379/3", params)
    from_a_thread: list = []
    thread = threading.Thread(
        target=lambda: from_a_thread.append(RedisCache("redis://127.0.0.1:6379/3", params)._cache)
    )
    thread.start()
    thread.join()
    assert from_a_thread == [first._cache]
    assert first._cache._get_connection_pool(True) is from_a_thread[0]._get_connection_pool(True)
    assert RedisCache("redis://127.0.0.1:6379/4", params)._cache is not first._cache
