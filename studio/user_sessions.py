"""Which sessions belong to which user, so that deactivating a user can end every one of them; and how long a
session may live (an idle timeout and an absolute lifetime, ``STUDIO_SESSION_*``).

Django's sessions are keyed by a random key and hold the user id only inside their encoded data, so there is
no way to find a user's sessions without decoding every row. Instead each sign-in records its session key
here (``user_logged_in``), and a sign-out forgets it. Deleting goes through the configured session engine, so
it works for database, cache and cached-database sessions alike.
"""

from __future__ import annotations

import time
from datetime import timedelta
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
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


def delete_sessions(user: Any, *, keep: str | None = None) -> int:
    """Delete every recorded session of ``user`` but ``keep``; returns how many were ended. The studio's
    callers go through ``services.end_sessions``, which also tells the user's open websockets."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    rows = UserSession.objects.filter(user=user)
    if keep:
        rows = rows.exclude(session_key=keep)
    keys = list(rows.values_list("session_key", flat=True))
    for key in keys:
        store().delete(key)
    UserSession.objects.filter(user=user, session_key__in=keys).delete()
    return len(keys)


# Session keys holding when the session signed in and when it was last used (epoch seconds).
STARTED = "studio_started_at"
SEEN = "studio_seen_at"
# The last-seen time is written at most this often, so most requests do not save the session.
SEEN_RESOLUTION = 60


def session_expired(session: Any, now: float | None = None) -> str | None:
    """Why a signed-in session is over (``"idle"`` or ``"lifetime"``), or None while it may go on."""
    now = time.time() if now is None else now
    started, seen = session.get(STARTED), session.get(SEEN)
    if started is None or seen is None:
        return None
    if now - started > settings.STUDIO_SESSION_MAX_SECONDS:
        return "lifetime"
    if now - seen > settings.STUDIO_SESSION_IDLE_SECONDS:
        return "idle"
    return None


EXPIRED_MESSAGES = {
    "idle": "You were signed out after a period of inactivity. Sign in again to continue.",
    "lifetime": "Your session reached its maximum length. Sign in again to continue.",
}


class SessionLifetimeMiddleware:
    """Ends a browser session that was idle too long or is older than its absolute lifetime.

    The session is flushed and the request goes on as anonymous, so pages send the visitor to sign in and the
    API answers 401, each as it does for anyone signed out. API tokens carry no session and are unaffected.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if getattr(request, "api_token", None) is None and request.user.is_authenticated:
            session = request.session
            now = time.time()
            reason = session_expired(session, now)
            if reason:
                UserSession.objects.filter(session_key=session.session_key).delete()
                session.flush()
                request.user = AnonymousUser()
                messages.info(request, EXPIRED_MESSAGES[reason])
            elif session.get(STARTED) is None:
                session[STARTED] = session[SEEN] = now  # a session from before lifetimes were kept
            elif now - session[SEEN] >= SEEN_RESOLUTION:
                session[SEEN] = now
        return self.get_response(request)


@database_sync_to_async
def _session_over(session: Any) -> bool:
    return session_expired(session) is not None


class WebsocketSessionLifetime:
    """Inside Channels' session and auth middleware: a socket of an expired session is anonymous."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        session = scope.get("session")
        if session is not None and await _session_over(session):
            scope = dict(scope, user=AnonymousUser())
        return await self.inner(scope, receive, send)


@receiver(user_logged_in, dispatch_uid="studio.user_sessions.signed_in")
def _signed_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if session is None:
        return
    session[STARTED] = session[SEEN] = time.time()
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
