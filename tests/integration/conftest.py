"""Fixtures shared by the integration tests of the production layout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from django.conf import settings

from tests.integration.proxy import Nginx, make_tls, nginx_binary
from tests.integration.stack import ROOT, free_port

METRICS_TOKEN = "metrics-" + "s" * 32


@pytest.fixture(scope="session")
def proxied(stack, tmp_path_factory):
    """nginx (rendered from deploy/nginx/templates) → a daphne with the proxy's settings → the session's
    worker, database and Redis."""
    if nginx_binary() is None and os.environ.get("CI") != "true":
        pytest.skip("nginx is not installed (apt-get install nginx)")
    folder = tmp_path_factory.mktemp("nginx")
    ca, cert, key = make_tls(folder / "tls")
    static_root = folder / "static"
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**stack.env(), "STUDIO_STATIC_ROOT": str(static_root)},
        check=True,
    )
    web_port = free_port()
    nginx = Nginx(
        folder,
        {
            "STUDIO_SERVER_NAME": "localhost 127.0.0.1",
            "STUDIO_TLS_CERT": str(cert),
            "STUDIO_TLS_KEY": str(key),
            "STUDIO_WEB_UPSTREAM": f"127.0.0.1:{web_port}",
            "STUDIO_STATIC_ROOT": str(static_root),
            "STUDIO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "STUDIO_MAX_BODY": "21m",
            # The optional parts load too (nginx -t checks them); nothing listens behind them here.
            "STUDIO_FLOWER_UPSTREAM": f"127.0.0.1:{free_port()}",
            "STUDIO_S3_ORIGIN": f"http://127.0.0.1:{free_port()}",
            "STUDIO_S3_HOST": "s3.studio.internal",
        },
    )
    origin = f"https://127.0.0.1:{nginx.https_port}"
    web = stack.spawn_web(
        "daphne-behind-nginx",
        web_port,
        STUDIO_SERVE_STATIC="false",
        STUDIO_MEDIA_ACCEL="/_media/",
        STUDIO_CSRF_TRUSTED_ORIGINS=origin,
        STUDIO_METRICS_TOKEN=METRICS_TOKEN,
    )
    nginx.start()
    try:
        yield {"nginx": nginx, "origin": origin, "ca": ca, "web_port": web_port}
    except BaseException:
        print(nginx.logs())
        raise
    finally:
        nginx.stop()
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(10)
