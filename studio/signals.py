"""Signals the team layer sends to the apps above it, so it never needs to import them."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.dispatch import Signal

# Sent by ``services.do_delete_project`` inside the deleting transaction, before the project's rows go,
# with ``project=``. Each receiver (gallery, generation) returns a ``Removal`` for what it keeps of the
# project; it may also queue ``transaction.on_commit`` work of its own (stopping running jobs, say). With
# ``dry_run=True`` (the page that asks to confirm) receivers only count.
project_deleting = Signal()


def removals(project: object, *, dry_run: bool = False) -> list[Removal]:
    """What every receiver of ``project_deleting`` hands back for ``project``."""
    found: list[Removal] = []
    for _, result in project_deleting.send(sender=type(project), project=project, dry_run=dry_run):
        removal: object = result
        if isinstance(removal, Removal):
            found.append(removal)
    return found


@dataclass
class Removal:
    """What leaves with a deleted project: storage names (files, or folders ending in "/") removed once the
    deletion commits, and counts for its audit event."""

    storage_names: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
