"""Removing files from the default storage (the filesystem, or S3/MinIO) after the rows that named them
are gone."""

from __future__ import annotations

import logging
import posixpath

from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)


def delete_stored(names: list[str]) -> None:
    """Delete files, and whole folders for names ending in "/", best effort: a file already gone, or a
    storage that fails, is logged and never undoes the database change that made the file an orphan."""
    for name in names:
        if not name:
            continue
        try:
            if name.endswith("/"):
                _delete_folder(name.rstrip("/"))
            else:
                default_storage.delete(name)
        except Exception:
            logger.exception("could not delete %s from storage", name)


def _delete_folder(folder: str) -> None:
    try:
        dirs, files = default_storage.listdir(folder)  # on S3: the objects under the prefix
    except FileNotFoundError:
        return
    for name in files:
        default_storage.delete(posixpath.join(folder, name))
    for name in dirs:
        _delete_folder(posixpath.join(folder, name))
    default_storage.delete(folder)  # the now empty directory (a no-op on S3)
