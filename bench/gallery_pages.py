"""`make bench` (second half): server time of the gallery page on 100,000 assets in PostgreSQL.

It creates a throwaway database (``DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/studio_bench``;
any existing database of that name is dropped), migrates it, seeds one project with 100,000 assets by ``COPY``
(metadata only: the page renders no image bytes), then times the gallery page through Django's test
``Client`` in this process (warm: each scenario runs a few unmeasured requests first). First pages and deep
pages (a cursor at a random asset), with and without filters and with full-text search, ``--requests`` each.
It prints p50/p95 in ms and p95 against the 50 ms target, then drops the database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/studio_bench"
TARGET_MS = 50.0
WORDS = (
    "cat dog fox owl horse dragon robot castle forest city river ocean mountain desert garden street "
    "portrait landscape sunset night morning winter summer autumn spring red blue green golden silver "
    "neon misty rainy snowy ancient futuristic tiny giant cozy dark bright watercolor oil sketch photo "
    "cinematic painting lantern bridge tower island ship train market library kitchen window"
).split()
STATUSES = ["draft"] * 6 + ["submitted"] * 2 + ["approved", "rejected", "changes_requested"]
MODELS = [("demo", "Demo"), ("sd15", "Stable Diffusion 1.5"), ("sdxl", "SDXL")]


def admin_connection(url: str):
    import psycopg

    parsed = urlparse(url)
    return psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True)


def recreate_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    with admin_connection(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    from django.db import connections

    connections.close_all()
    name = urlparse(url).path.lstrip("/")
    with admin_connection(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(count: int, rng: random.Random) -> dict:
    """One project, a lead and five artists, ``count`` assets over the last 90 days, by COPY."""
    from django.db import connection

    from studio.models import Membership, Project, Role, User

    lead = User.objects.create_user("lead", password="x")  # noqa: S106 - a throwaway database
    artists = [User.objects.create_user(f"artist{i}", password="x") for i in range(5)]  # noqa: S106
    project = Project.objects.create(name="Bench", slug="bench", created_by=lead)
    Membership.objects.create(project=project, user=lead, role=Role.LEAD)
    for a in artists:
        Membership.objects.create(project=project, user=a, role=Role.ARTIST)
    authors = [lead.pk] + [a.pk for a in artists]
    now = dt.datetime.now(dt.UTC)
    columns = (
        "id, project_id, job_id, index, kind, file, thumbnail, mask, file_size, width, height, seed, prompt, "
        "negative_prompt, params, model_id, model_name, model_sha256, status, created_by_id, created_at"
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.connection.cursor().copy(f"COPY gallery_asset ({columns}) FROM STDIN") as copy:
            for _ in range(count):
                asset_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
                model_id, model_name = rng.choice(MODELS)
                seed_value = rng.getrandbits(32)
                params = json.dumps({"prompt": prompt, "seed": seed_value, "steps": 20})
                copy.write_row(
                    (
                        asset_id,
                        project.pk,
                        None,
                        0,
                        "generated",
                        f"assets/{project.pk}/{asset_id}.png",
                        "",
                        "",
                        None,
                        512,
                        512,
                        seed_value,
                        prompt,
                        "",
                        params,
                        model_id,
                        model_name,
                        "0" * 64,
                        rng.choice(STATUSES),
                        rng.choice(authors),
                        now - dt.timedelta(seconds=rng.uniform(0, 90 * 86400)),
                    )
                )
        # As a long-lived table is: vacuumed (visibility map set) and analysed, so autovacuum does not start
        # on the fresh rows in the middle of the measurements.
        cursor.execute("VACUUM ANALYZE gallery_asset")
    print(f"seeded {count} assets in {time.perf_counter() - started:.1f} s", flush=True)
    return {"project": project, "lead": lead, "artists": artists}


def random_cursors(rng: random.Random, filters: dict, n: int) -> list[str]:
    """Cursors at random assets among those the filters keep (as if the reader had scrolled there)."""
    from gallery.models import Asset
    from gallery.queries import filtered_assets
    from studio.models import Project
    from studio.pagination import encode_cursor

    queryset, _ = filtered_assets(None, Project.objects.get(slug="bench"), filters)
    rows = list(queryset.select_related(None).order_by("-created_at", "-id").values("id", "created_at"))
    picks = [rows[rng.randrange(max(len(rows) - 30, 1))] for _ in range(n)]
    return [encode_cursor(Asset(**row)) for row in picks]


def measure(client, url_for, n: int, warm: int = 10) -> list[float]:
    for _ in range(warm):
        client.get(url_for())
    times = []
    for _ in range(n):
        url = url_for()
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        assert b"asset-card" in response.content or b"No images match" in response.content, url
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    url = os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    if not urlparse(url).scheme.startswith("postgres"):
        raise SystemExit("bench/gallery_pages.py needs DATABASE_URL to point at PostgreSQL")
    os.environ.setdefault("STUDIO_ENV", "test")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    recreate_database(url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    try:
        setup_test_environment()  # the test Client's template context capture, as in the test suite
        call_command("migrate", verbosity=0)
        rng = random.Random(4)
        world = seed(args.assets, rng)
        client = Client()
        client.force_login(world["lead"])
        base = "/p/bench/gallery/"
        artist = world["artists"][0].username
        filters = {"status": "draft", "author": artist}
        scenarios = [
            ("first page", {}),
            ("first page, status+author", filters),
            ("first page, search 'castle'", {"q": "castle"}),
            ("first page, search 'cat night'", {"q": "cat night"}),
            ("first page, oldest", {"order": "oldest"}),
            ("deep page", {"deep": True}),
            ("deep page, status+author", {**filters, "deep": True}),
            ("deep page, since/until", {"since": "2026-01-01", "until": "2099-01-01", "deep": True}),
            ("deep page, search 'castle'", {"q": "castle", "deep": True}),
            ("deep page, oldest", {"order": "oldest", "deep": True}),
        ]
        print(f"{'scenario':36} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p95/50ms':>9}")
        for name, params in scenarios:
            params = dict(params)
            deep = params.pop("deep", False)
            cursors = random_cursors(rng, params, 50) if deep else []

            def url_for(params: dict = params, cursors: list = cursors) -> str:
                query = {**params, "cursor": rng.choice(cursors)} if cursors else params
                return base + "?" + urlencode(query)

            times = measure(client, url_for, args.requests)
            p50 = statistics.median(times)
            p95 = statistics.quantiles(times, n=20)[18]
            print(f"{name:36} {len(times):>4} {p50:8.1f} {p95:8.1f} {p95 / TARGET_MS:9.2f}", flush=True)
    finally:
        if not args.keep:
            drop_database(url)


if __name__ == "__main__":
    main()
