"""``manage.py backup`` and ``manage.py restore``: one consistent archive of an installation, taken while it
runs, read back into an empty one.

The archive is a tar file:

* ``database/postgresql.dump`` (``pg_dump -Fc``) or ``database/studio.sqlite3`` (SQLite's online backup);
* ``media/<name>``: every file of the default storage, as stored (still encrypted where a storage encrypts
  at rest: its bytes are copied, never decoded);
* ``models/<id>/studio.json``: each model's record (sha256, family, defaults); the weights only with
  ``--with-weights`` (they are large and can be installed again from their source);
* ``manifest.json``, last: what the archive holds, with the sha256 and size of every other member.

Consistency: on PostgreSQL the dump and the list of files the database refers to come from one exported
snapshot (``pg_dump --snapshot``), on SQLite from the backup copy itself. Media are copied after it: a file
made later is an extra the restored database never names; a file the snapshot names that has been deleted
since is recorded as missing in the manifest. Restore checks every sha256 before it writes anything.

Storages that keep bytes other than the ones clients get can offer ``open_raw(name)`` and
``save_raw(name, file)``; both commands use them when present.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from django.apps import apps
from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.db import connection, models, transaction
from django.db.migrations.recorder import MigrationRecorder

FORMAT = 1
CHUNK = 1024 * 1024
MANIFEST = "manifest.json"
PG_DUMP = "database/postgresql.dump"
SQLITE_COPY = "database/studio.sqlite3"


class BackupError(Exception):
    """Something an operator must act on; the message says what."""


Progress = Callable[[str, int], Any]  # (what, total bytes) → a tqdm-like object with update() and close()


def _no_progress(what: str, total: int) -> Any:
    class Quiet:
        def update(self, n: int) -> None:
            pass

        def close(self) -> None:
            pass

    return Quiet()


# --- what the database refers to ----------------------------------------------------------------


def file_columns() -> list[tuple[str, str]]:
    """(table, column) of every FileField of every installed model."""
    found = []
    for model in apps.get_models():
        for f in model._meta.get_fields():
            if isinstance(f, models.FileField):
                found.append((model._meta.db_table, f.column or f.name))
    return found


def _referenced(execute: Callable[[str], list[tuple[Any, ...]]]) -> set[str]:
    names: set[str] = set()
    for table, column in file_columns():
        for (name,) in execute(f'SELECT "{column}" FROM "{table}" WHERE "{column}" <> \'\''):  # noqa: S608
            names.add(name)
    return names


# --- storage, byte for byte -----------------------------------------------------------------------


def _walk(storage: Storage, folder: str = "") -> Iterator[str]:
    try:
        dirs, files = storage.listdir(folder)
    except FileNotFoundError:  # a media folder not made yet holds nothing
        return
    for name in sorted(files):
        yield f"{folder}/{name}" if folder else name
    for sub in sorted(dirs):
        yield from _walk(storage, f"{folder}/{sub}" if folder else sub)


def _open_raw(storage: Storage, name: str) -> IO[bytes]:
    raw = getattr(storage, "open_raw", None)
    if raw is not None:
        return raw(name)
    if isinstance(storage, FileSystemStorage):
        return open(storage.path(name), "rb")  # noqa: SIM115 - closed by the caller
    return storage.open(name, "rb")


def _save_raw(storage: Storage, name: str, data: IO[bytes]) -> None:
    raw = getattr(storage, "save_raw", None)
    if raw is not None:
        raw(name, data)
        return
    if isinstance(storage, FileSystemStorage):
        target = Path(storage.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            shutil.copyfileobj(data, out, CHUNK)
        return
    saved = storage.save(name, File(data, name=name))
    if saved != name:
        raise BackupError(f"The storage saved {name} as {saved}; restore into an empty storage.")


def _storage_size(storage: Storage, name: str) -> int:
    try:
        return int(storage.size(name))
    except (OSError, NotImplementedError):
        return 0


# --- writing -------------------------------------------------------------------------------------


@dataclass
class ArchiveWriter:
    tar: tarfile.TarFile
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_stream(self, member: str, stream: IO[bytes], size: int, progress: Any = None) -> None:
        """Add a member whose size is known, hashing it as it goes in."""
        digest = hashlib.sha256()

        class Hashing(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                chunk = stream.read(len(buffer))
                if not chunk:
                    return 0
                digest.update(chunk)
                if progress is not None:
                    progress.update(len(chunk))
                buffer[: len(chunk)] = chunk
                return len(chunk)

        info = tarfile.TarInfo(member)
        info.size = size
        info.mtime = int(datetime.now(UTC).timestamp())
        info.mode = 0o600
        self.tar.addfile(info, io.BufferedReader(Hashing(), CHUNK))
        self.files[member] = {"sha256": digest.hexdigest(), "size": size}

    def add_path(self, member: str, path: Path, progress: Any = None) -> None:
        with open(path, "rb") as f:
            self.add_stream(member, f, path.stat().st_size, progress)

    def add_bytes(self, member: str, data: bytes) -> None:
        self.add_stream(member, io.BytesIO(data), len(data))


def _migrations() -> dict[str, list[str]]:
    applied: dict[str, list[str]] = {}
    for app, name in MigrationRecorder(connection).applied_migrations():
        applied.setdefault(app, []).append(name)
    return {app: sorted(names) for app, names in sorted(applied.items())}


def _pg_env() -> tuple[list[str], dict[str, str]]:
    db = settings.DATABASES["default"]
    args = ["-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"] or "postgres"]
    env = dict(os.environ)
    if db["PASSWORD"]:
        env["PGPASSWORD"] = db["PASSWORD"]
    for option, variable in (("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT")):
        if db["OPTIONS"].get(option):
            env[variable] = db["OPTIONS"][option]
    return args, env


def _program(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise BackupError(
            f"{name} is not installed; install PostgreSQL's client programs (postgresql-client)."
        )
    return found


def _dump_postgresql(workdir: Path) -> tuple[Path, set[str]]:
    """pg_dump from a snapshot this connection holds open; the files the same snapshot refers to."""
    dump = workdir / "postgresql.dump"
    args, env = _pg_env()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        (snapshot,) = cursor.fetchone()
        done = subprocess.run(  # noqa: S603 - pg_dump with our own arguments
            [_program("pg_dump"), *args, "-Fc", "--no-owner", "--no-acl", f"--snapshot={snapshot}"]
            + ["-f", str(dump), settings.DATABASES["default"]["NAME"]],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BackupError(f"pg_dump failed: {done.stderr.strip()}")

        def execute(sql: str) -> list[tuple[Any, ...]]:
            cursor.execute(sql)
            return list(cursor.fetchall())

        referenced = _referenced(execute)
    return dump, referenced


def _copy_sqlite(workdir: Path) -> tuple[Path, set[str]]:
    copy = workdir / "studio.sqlite3"
    source = sqlite3.connect(settings.DATABASES["default"]["NAME"])
    target = sqlite3.connect(copy)
    try:
        source.backup(target)  # SQLite's online backup: a consistent copy while others write
    finally:
        source.close()
    try:
        referenced = _referenced(lambda sql: list(target.execute(sql).fetchall()))
    finally:
        target.close()
    return copy, referenced


def model_records(with_weights: bool) -> Iterator[tuple[str, Path]]:
    """(archive member, path) of each installed model's studio.json, or of all its files."""
    root = Path(settings.MODELS_DIR)
    if not root.is_dir():
        return
    for record in sorted(root.glob("**/studio.json")):
        folder = record.parent
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue  # a model still being installed
        if with_weights:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                yield f"models/{path.relative_to(root)}", path
        else:
            yield f"models/{record.relative_to(root)}", record


def backup(destination: Path, *, with_weights: bool = False, progress: Progress = _no_progress) -> dict:
    """Write the archive to ``destination`` (a file, or a folder to put a dated file in); return the
    manifest. Written under a temporary name and renamed, so a finished archive is always whole."""
    if destination.is_dir():
        destination = destination / f"studio-backup-{datetime.now(UTC):%Y%m%d-%H%M%S}.tar"
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    vendor = connection.vendor
    if vendor not in ("postgresql", "sqlite"):
        raise BackupError(f"Backups support PostgreSQL and SQLite, not {vendor}.")
    storage = default_storage
    with tempfile.TemporaryDirectory(prefix="studio-backup-") as tmp:
        if vendor == "postgresql":
            database, referenced = _dump_postgresql(Path(tmp))
            member = PG_DUMP
        else:
            database, referenced = _copy_sqlite(Path(tmp))
            member = SQLITE_COPY
        with tarfile.open(partial, "w") as tar:
            writer = ArchiveWriter(tar)
            writer.add_path(member, database)
            names = list(_walk(storage))
            sizes = {name: _storage_size(storage, name) for name in names}
            bar = progress("media", sum(sizes.values()))
            copied, vanished = [], []
            try:
                for name in names:
                    try:
                        with _open_raw(storage, name) as f:
                            data = f.read()  # sizes can change while a file is replaced: read it whole
                    except FileNotFoundError:
                        vanished.append(name)
                        continue
                    writer.add_stream(f"media/{name}", io.BytesIO(data), len(data), bar)
                    copied.append(name)
            finally:
                bar.close()
            records = list(model_records(with_weights))
            bar = progress("models", sum(p.stat().st_size for _, p in records))
            try:
                for model_member, path in records:
                    writer.add_path(model_member, path, bar)
            finally:
                bar.close()
            manifest = {
                "format": FORMAT,
                "created_at": datetime.now(UTC).isoformat(),
                "database": {"vendor": vendor, "member": member},
                "migrations": _migrations(),
                "media": {
                    "files": len(copied),
                    "referenced": len(referenced),
                    "missing": sorted(referenced - set(copied)),
                },
                "models": {"with_weights": with_weights, "files": len(records)},
                "files": writer.files,
            }
            info = tarfile.TarInfo(MANIFEST)
            body = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info.size = len(body)
            info.mtime = int(datetime.now(UTC).timestamp())
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(body))
    partial.chmod(0o600)
    partial.replace(destination)
    manifest["path"] = str(destination)
    return manifest


# --- reading ------------------------------------------------------------------------------------


def read_manifest(tar: tarfile.TarFile) -> dict:
    try:
        member = tar.getmember(MANIFEST)
    except KeyError as exc:
        raise BackupError("This is not a studio backup: it has no manifest.json.") from exc
    extracted = tar.extractfile(member)
    assert extracted is not None
    manifest = json.loads(extracted.read())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"This backup's format ({manifest.get('format')}) is not one this version reads.")
    return manifest


def verify(archive: Path, progress: Progress = _no_progress) -> dict:
    """Check every member against the manifest's sha256 and size; return the manifest."""
    with tarfile.open(archive, "r") as tar:
        manifest = read_manifest(tar)
        expected = manifest["files"]
        seen: set[str] = set()
        bar = progress("verify", sum(f["size"] for f in expected.values()))
        try:
            for member in tar:
                if member.name == MANIFEST:
                    continue
                if member.name not in expected:
                    raise BackupError(f"{member.name} is in the archive but not in its manifest.")
                if not member.isfile():
                    raise BackupError(f"{member.name} is not a plain file.")
                stream = tar.extractfile(member)
                assert stream is not None
                digest = hashlib.sha256()
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    bar.update(len(chunk))
                if digest.hexdigest() != expected[member.name]["sha256"]:
                    raise BackupError(f"{member.name} does not match its sha256: the archive is damaged.")
                seen.add(member.name)
        finally:
            bar.close()
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"The archive lacks {len(missing)} file(s) its manifest lists, first {missing[0]}.")
    return manifest


def _data_rows() -> int:
    """Rows of the tables that hold a studio's work (an installation with only its first admin, or only
    its migrated tables, is empty)."""
    tables = set(connection.introspection.table_names())
    total = 0
    with connection.cursor() as cursor:
        for table in ("studio_project", "generation_job", "gallery_asset"):
            if table in tables:
                cursor.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 - fixed names
                total += cursor.fetchone()[0]
    return total


def _check_empty() -> None:
    if _data_rows():
        raise BackupError(
            "This installation already has projects, jobs or images; restore into an empty one "
            "(a new database and media storage)."
        )
    if any(True for _ in _walk(default_storage)):
        raise BackupError("The media storage is not empty; restore into an empty one.")


def _member_name(member: str, prefix: str) -> str:
    name = member[len(prefix) :]
    parts = Path(name).parts
    if not name or name.startswith("/") or ".." in parts:
        raise BackupError(f"Refusing the unsafe name {member!r} in the archive.")
    return name


def restore(archive: Path, *, progress: Progress = _no_progress) -> dict:
    """Verify the archive, then load its database, media and model records into this (empty) installation."""
    manifest = verify(archive, progress)
    vendor = manifest["database"]["vendor"]
    if vendor != connection.vendor:
        raise BackupError(
            f"The backup holds a {vendor} database; this installation uses {connection.vendor}."
        )
    _check_empty()
    with tarfile.open(archive, "r") as tar, tempfile.TemporaryDirectory(prefix="studio-restore-") as tmp:
        member = tar.extractfile(manifest["database"]["member"])
        assert member is not None
        database = Path(tmp) / "database"
        with open(database, "wb") as out:
            shutil.copyfileobj(member, out, CHUNK)
        if vendor == "postgresql":
            _restore_postgresql(database)
        else:
            _restore_sqlite(database)
        media = [m for m in tar.getmembers() if m.name.startswith("media/")]
        bar = progress("media", sum(m.size for m in media))
        try:
            for item in media:
                stream = tar.extractfile(item)
                assert stream is not None
                _save_raw(default_storage, _member_name(item.name, "media/"), stream)
                bar.update(item.size)
        finally:
            bar.close()
        kept, skipped = _restore_models(tar)
    return {**manifest, "models_restored": kept, "models_skipped": skipped}


def _restore_postgresql(dump: Path) -> None:
    connection.close()
    with connection.cursor() as cursor:
        # Only migrated, empty tables can be here (checked): start from a bare schema.
        cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    connection.close()
    args, env = _pg_env()
    done = subprocess.run(  # noqa: S603 - pg_restore with our own arguments
        [_program("pg_restore"), *args, "--no-owner", "--no-acl", "--exit-on-error"]
        + ["-d", settings.DATABASES["default"]["NAME"], str(dump)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed: {done.stderr.strip()}")


def _restore_sqlite(copy: Path) -> None:
    connection.close()
    source = sqlite3.connect(copy)
    target = sqlite3.connect(settings.DATABASES["default"]["NAME"])
    try:
        source.backup(target)  # replaces every page of the target, under SQLite's own locking
    finally:
        source.close()
        target.close()


def _restore_models(tar: tarfile.TarFile) -> tuple[list[str], list[str]]:
    """Each model's files where the models dir has none for it yet; a record whose model is already
    installed here is left as it is (reported)."""
    root = Path(settings.MODELS_DIR)
    kept: set[str] = set()
    skipped: set[str] = set()
    for item in tar.getmembers():
        if not item.name.startswith("models/"):
            continue
        name = _member_name(item.name, "models/")
        model = Path(name).parts[0]
        target = root / name
        if model in skipped or (target.exists() and model not in kept):
            skipped.add(model)
            continue
        kept.add(model)
        target.parent.mkdir(parents=True, exist_ok=True)
        stream = tar.extractfile(item)
        assert stream is not None
        with open(target, "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)
    return sorted(kept), sorted(skipped)
