from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """A tiny random-weight Stable Diffusion model in the models dir, built once per test run.

    The parallel test processes share the data dir, so each builds into its own hidden folder and renames it
    into place: a process never sees a half-written model (say, weights without their ``studio.json``)."""
    target = Path(settings.MODELS_DIR) / settings.STUDIO_DEFAULT_MODEL
    if not (target / "model_index.json").exists():
        from generation.engine.demo import build_random_model

        staging = target.parent / f".building-{target.name}-{os.getpid()}"
        build_random_model(staging)
        try:
            staging.rename(target)
        except OSError:  # another process got there first; its model is whole
            shutil.rmtree(staging)
    return target


@pytest.fixture
def models_dir(settings, tmp_path, monkeypatch) -> Path:
    """An empty models dir of the test's own; jobs are run in the test (call ``run_job``) instead of being
    sent to Celery."""
    from django.core.cache import cache

    from generation import services

    settings.MODELS_DIR = tmp_path / "models"
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    cache.clear()
    return settings.MODELS_DIR


@pytest.fixture
def team(db):
    from tests import factories

    return factories.team()


def pytest_collection_modifyitems(config, items):
    """Integration and browser tests need real services; outside CI they skip when those are missing."""
    if os.environ.get("CI") == "true":
        return
    from tests.integration.stack import services_missing

    missing = None
    for item in items:
        if item.get_closest_marker("integration") or item.get_closest_marker("browser"):
            if missing is None:
                missing = services_missing() or ""
            if missing:
                item.add_marker(pytest.mark.skip(reason=missing))


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, demo_model_dir):
    """daphne + one Celery worker on the test database (PostgreSQL) and Redis, for the whole session."""
    import redis
    from django.db import connection

    from tests.integration.stack import Stack

    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # a clean broker queue and channel layer
    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    s = Stack(name, Path(settings.DATA_DIR))
    s.start_web()
    s.start_worker()
    try:
        s.wait_worker_ready()
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


@pytest.fixture(scope="session")
def sso_stack(django_db_setup, django_db_blocker, tmp_path_factory):
    """daphne signing in through a real OpenID Connect provider on loopback, for the whole session.

    Its settings: SSO only, with root as the break-glass account; accounts for the studio.test domain and
    for the studio-admins and contractors groups; studio-admins are site admins; MFA is required for site
    admins. No worker: these tests never generate."""
    from django.db import connection

    from tests.integration.oidc import IdentityProvider
    from tests.integration.stack import Stack

    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    s = Stack(name, Path(settings.DATA_DIR))
    s.log_dir = Path(settings.DATA_DIR) / "logs-sso"
    s.log_dir.mkdir(parents=True, exist_ok=True)
    idp = IdentityProvider(tmp_path_factory.mktemp("idp"), s.base_url)
    s.extra_env = {
        **idp.env(),
        "STUDIO_SSO_ONLY": "true",
        "STUDIO_SSO_BREAK_GLASS": "root",
        "STUDIO_SSO_ALLOWED_DOMAINS": "studio.test",
        "STUDIO_SSO_ALLOWED_GROUPS": "studio-admins,contractors",
        "STUDIO_SSO_ADMIN_GROUPS": "studio-admins",
        "STUDIO_MFA_REQUIRED": "admins",
    }
    try:
        idp.start()
        s.start_web()
        s.idp = idp
        yield s
    except BaseException:
        print(s.logs())
        print(idp.log_path.read_text(errors="replace")[-4000:] if idp.log_path.exists() else "")
        raise
    finally:
        s.stop()
        idp.stop()
