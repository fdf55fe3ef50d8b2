"""Leads stepping down or removing each other at the same moment: a project always keeps one (PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

import pytest
from django.db import connection, connections

from studio import services
from studio.errors import Conflict, NotAllowed
from studio.models import Membership, Role
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def race(calls: list[Callable[[], object]]) -> list[str]:
    """Run the calls in threads released together; what each one got."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            call()
            result = "done"
        except Conflict:
            result = "last lead"
        except NotAllowed:
            result = "not allowed"
        except Exception as exc:  # a deadlock or a crash fails the test visibly
            result = f"error: {exc!r}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_five_leads_stepping_down_at_once_leave_exactly_one():
    assert connection.vendor == "postgresql"
    leads = [factories.user(f"lead{i}") for i in range(5)]
    project = factories.project(leads[0])
    for u in leads[1:]:
        factories.member(project, u, Role.LEAD)

    outcomes = race([partial(services.do_change_role, u, project, u.username, Role.ARTIST) for u in leads])

    assert sorted(outcomes) == ["done"] * 4 + ["last lead"], outcomes
    assert Membership.objects.filter(project=project, role=Role.LEAD).count() == 1


@pytest.mark.parametrize("rounds", [10])
def test_two_leads_removing_or_demoting_each_other_at_once_leave_one(rounds):
    assert connection.vendor == "postgresql"
    for n in range(rounds):
        a, b = factories.user(f"a{n}"), factories.user(f"b{n}")
        project = factories.project(a, name=f"Race {n}")
        factories.member(project, b, Role.LEAD)
        if n % 2:
            calls = [
                partial(services.do_remove_member, a, project, b.username),
                partial(services.do_remove_member, b, project, a.username),
            ]
        else:
            calls = [
                partial(services.do_change_role, a, project, b.username, Role.VIEWER),
                partial(services.do_change_role, b, project, a.username, Role.VIEWER),
            ]
        outcomes = race(calls)
        # The loser is refused either as the last lead or, having just lost the lead role, as not allowed.
        assert sorted(outcomes)[0] == "done" and sorted(outcomes)[1] in ("last lead", "not allowed"), outcomes
        assert Membership.objects.filter(project=project, role=Role.LEAD).count() == 1
