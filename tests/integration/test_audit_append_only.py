"""On PostgreSQL the database itself refuses to change or delete audit events, whatever SQL the caller sends;
only the foreign keys a deleted user or project leaves behind may be cleared."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from studio import audit
from studio.models import AuditEvent
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def event(team):
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger exists on PostgreSQL only")
    return audit.record(team["alice"], audit.MEMBER_ADD, target="user:bob", project=team["project"])


def refused(sql: str, params: list) -> bool:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    return True


def test_raw_updates_and_deletes_are_refused(event):
    assert refused("UPDATE studio_auditevent SET target = 'user:eve' WHERE id = %s", [event.pk])
    assert refused('UPDATE studio_auditevent SET details = \'{"role": "lead"}\' WHERE id = %s', [event.pk])
    assert refused("UPDATE studio_auditevent SET actor_id = NULL, target = 'x' WHERE id = %s", [event.pk])
    assert refused("DELETE FROM studio_auditevent WHERE id = %s", [event.pk])
    # Past the application's own guards, too.
    assert refused("UPDATE studio_auditevent SET action = 'auth.sign_in' WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent._base_manager.filter(pk=event.pk).update(target="user:eve")
    assert AuditEvent.objects.get(pk=event.pk).target == "user:bob"


def test_deleting_a_user_or_project_clears_only_the_link(event, team):
    dana = factories.user("dana")
    temp = factories.project(team["alice"], "Temp")
    kept = audit.record(dana, audit.PROJECT_CREATE, target="project:temp", project=temp)
    temp.delete()
    dana.delete()
    kept = AuditEvent.objects.get(pk=kept.pk)
    assert (kept.actor, kept.actor_name, kept.project, kept.project_slug) == (None, "dana", None, "temp")
