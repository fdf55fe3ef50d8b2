"""Against real Redis servers: a pickle planted in the cache is never run, and the studio's three Redis users
(cache, channel layer, Celery broker) all work over TLS (rediss://) with a password, verifying the server."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import redis
from django.conf import settings
from django.core.cache import cache

from tests.integration.stack import ROOT, free_port, wait_until

pytestmark = pytest.mark.integration


class Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_planted_in_the_cache_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    key = "job:00000000-0000-0000-0000-000000000000:cancel"
    redis.Redis.from_url(settings.REDIS_URL).set(cache.make_key(key), pickle.dumps(Exploit(str(marker))))
    assert cache.get(key) is None
    assert not marker.exists()
    cache.set(key, True)
    assert cache.get(key) is True


def _certificates(folder):
    """A CA and a certificate for 127.0.0.1 signed by it, made here (nothing is downloaded)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def key_pem(key):
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Studio test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key_pem(key))
    return paths


@pytest.fixture
def tls_redis(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed")
    paths = _certificates(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [
            server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(paths["cert"]), "--tls-key-file", str(paths["key"]),
            "--tls-ca-cert-file", str(paths["ca"]), "--tls-auth-clients", "no",
            "--requirepass", "tls-pass", "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = redis.Redis(host="127.0.0.1", port=port, password="tls-pass", ssl=True,
                             ssl_ca_certs=str(paths["ca"]))  # fmt: skip

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                return False

        wait_until(up, 15, what="redis-server with TLS")
        yield f"rediss://:tls-pass@127.0.0.1:{port}/0", paths["ca"]
    finally:
        proc.terminate()
        proc.wait(10)


PROBE = """
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from studio.celery import app

cache.set("tls-probe", {"ok": [1, 2]}, 30)
assert cache.get("tls-probe") == {"ok": [1, 2]}

async def layer_roundtrip():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("tls-probe", channel)
    await layer.group_send("tls-probe", {"type": "studio.event", "payload": {"n": 1}})
    message = await layer.receive(channel)
    await layer.flush()
    return message

assert async_to_sync(layer_roundtrip)()["payload"] == {"n": 1}

with app.connection_for_write() as conn:
    queue = conn.SimpleQueue("tls-probe")
    queue.put({"job": "x"})
    message = queue.get(timeout=10)
    assert message.payload == {"job": "x"}
    message.ack()
    queue.close()
print("tls ok")
"""


def run_probe(url: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "REDIS_URL", "DJANGO_"))}
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", PROBE],
        cwd=ROOT,
        env={**clean, "STUDIO_ENV": "test", "REDIS_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cache_channel_layer_and_broker_work_over_tls(tls_redis):
    url, ca = tls_redis
    result = run_probe(url, STUDIO_REDIS_CA_FILE=str(ca))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tls ok" in result.stdout
    # Without the CA the server's certificate cannot be verified, and nothing is sent.
    unverified = run_probe(url)
    assert unverified.returncode != 0
    assert "certificate verify failed" in unverified.stderr.lower()
