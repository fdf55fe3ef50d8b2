"""Ending and re-checking people's open websockets, from the team layer.

Every websocket the studio serves joins two groups besides what it streams: its user's (``user.<id>``) and
its project's access group (``access.<slug>``). The team layer talks to sockets only through them, so it needs
to know nothing about what the sockets show:

* ``end_user_sockets``: every socket of a user closes (deactivation; a password change, keeping the sockets
  of the session that changed it).
* ``recheck_access``: the sockets of one project, of one user or of everyone, ask the permission module
  again; those whose user no longer sees the project close, the others learn the user's current role.
* ``recheck_user``: every socket of a user asks again (their site admin rights changed); those that show
  what the user may no longer see close.

Sockets close with ``CLOSE_ACCESS_ENDED``. Call these from ``transaction.on_commit``, so the re-check reads
the committed change.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils.crypto import salted_hmac

logger = logging.getLogger(__name__)

# Consumers receive every group message through this handler name (``studio_event``).
HANDLER = "studio.event"
# To every socket of one user: close, unless it belongs to the session named by ``keep``.
SESSION_END = "session.end"
# To a project's sockets: ask again whether the user (``user``; everyone when absent) may see the project.
# Sockets that may stay are sent {"type": "access.changed", "project", "role"}. Without ``project`` (to a
# user's group), every socket of the user asks again about what it shows.
ACCESS_CHANGED = "access.changed"
# The websocket close code when a user's access ends.
CLOSE_ACCESS_ENDED = 4403


def user_group(user_id: Any) -> str:
    return f"user.{user_id}"


def access_group(slug: str) -> str:
    return f"access.{slug}"


def session_digest(session_key: str | None) -> str | None:
    """A stand-in for a session key in messages: the key itself never travels through Redis."""
    if not session_key:
        return None
    return salted_hmac("studio.sockets.session", session_key).hexdigest()


def envelope(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": HANDLER, "payload": payload}


def send(group: str, payload: dict[str, Any]) -> None:
    """Send now (call from on_commit or outside any transaction). A layer outage never fails the caller."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, envelope(payload))
    except Exception:  # the database holds the truth; a lost live event is only a missed repaint
        logger.warning("Could not send %s to %s", payload.get("type"), group, exc_info=True)


def end_user_sockets(user_id: Any, *, keep_session_key: str | None = None) -> None:
    """Close every open socket of the user, except those opened by the session ``keep_session_key``."""
    payload: dict[str, Any] = {"type": SESSION_END}
    keep = session_digest(keep_session_key)
    if keep:
        payload["keep"] = keep
    send(user_group(user_id), payload)


def recheck_access(slug: str, user_id: Any = None) -> None:
    """Make the project's sockets of ``user_id`` (of everyone when None) check their access again."""
    payload: dict[str, Any] = {"type": ACCESS_CHANGED, "project": slug}
    if user_id is None:
        send(access_group(slug), payload)
    else:
        send(user_group(user_id), {**payload, "user": user_id})


def recheck_user(user_id: Any) -> None:
    """Make every open socket of the user check their access again (their site admin rights changed)."""
    send(user_group(user_id), {"type": ACCESS_CHANGED, "user": user_id})
