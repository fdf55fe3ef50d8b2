"""Which sessions belong to which user, so that deactivating a user can end every one of them.

Django's sessions are keyed by a random key and hold the user id only inside their encoded data, so there is
no way to find a user's sessions without decoding every row. Instead each sign-in records its session key
here (``user_logged_in``), and a sign-out forgets it. Deleting goes through the configured session engine, so
it works for database, cache and cached-database sessions alike.
"""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from .models import UserSession


def remember_session(user: Any, session_key: str | None) -> None:
    """Record that ``session_key`` is ``user``'s. Call it again after anything that changes the key of a
    signed-in session without a new sign-in (``update_session_auth_hash`` after a password change)."""
    if not session_key:
        return
    UserSession.objects.update_or_create(session_key=session_key, defaults={"user": user})
    # Keys of sessions that have expired by now are of no use; keep the table from growing forever.
    too_old = timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE)
    UserSession.objects.filter(user=user, created_at__lt=too_old).delete()


def end_sessions(user: Any) -> int:
    """Delete every recorded session of ``user``; returns how many keys were ended."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    keys = list(UserSession.objects.filter(user=user).values_list("session_key", flat=True))
    for key in keys:
        store().delete(key)
    UserSession.objects.filter(user=user).delete()
    return len(keys)


@receiver(user_logged_in, dispatch_uid="studio.user_sessions.signed_in")
def _signed_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if session is None:
        return
    if session.session_key is None:
        # login() flushes a session that belonged to someone else, leaving it without a key until the
        # response is sent; save now so the key exists (the middleware saves the same key again later).
        session.save()
    remember_session(user, session.session_key)


@receiver(user_logged_out, dispatch_uid="studio.user_sessions.signed_out")
def _signed_out(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        UserSession.objects.filter(session_key=session.session_key).delete()
