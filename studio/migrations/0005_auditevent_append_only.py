"""Make the audit trail append-only in the database itself (PostgreSQL), not only in the application.

A row-level trigger refuses every DELETE and every UPDATE of ``studio_auditevent``, with one exception: an
UPDATE whose only change is clearing ``actor_id`` and/or ``project_id``. That is what ``on_delete=SET_NULL``
does when a user or a project is deleted; the event keeps ``actor_name`` and ``project_slug``, so nothing it
recorded is lost. TRUNCATE (an operator's deliberate wipe, and the test runner's flush) is not a row event and
stays possible for the database owner.

SQLite has no comparable trigger language worth maintaining here; there the model and its queryset refuse
updates and deletes (``AuditEvent.save``/``delete``, ``AppendOnlyQuerySet``).
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION studio_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'actor_id' - 'project_id') = (to_jsonb(OLD) - 'actor_id' - 'project_id')
       AND (NEW.actor_id IS NULL OR NEW.actor_id = OLD.actor_id)
       AND (NEW.project_id IS NULL OR NEW.project_id = OLD.project_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % of studio_auditevent % refused', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER studio_auditevent_append_only
    BEFORE UPDATE OR DELETE ON studio_auditevent
    FOR EACH ROW EXECUTE FUNCTION studio_auditevent_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS studio_auditevent_append_only ON studio_auditevent;
DROP FUNCTION IF EXISTS studio_auditevent_append_only();
"""


class PostgresOnlyRunSQL(migrations.RunSQL):
    """RunSQL that does nothing on other databases (the embedded mode and unit tests use SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [
        ("studio", "0004_usersession"),
    ]

    operations = [
        PostgresOnlyRunSQL(FORWARD, BACKWARD),
    ]
