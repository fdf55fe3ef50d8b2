"""A stored full-text vector of the prompt (PostgreSQL only), so a search reads it instead of computing
``to_tsvector`` for every row it looks at: on 100,000 assets a two-word search walked about 3,700 rows of
the newest-first index and spent most of its time parsing their prompts. SQLite searches with LIKE."""

from django.db import migrations

COLUMN = "prompt_search"
INDEX = "asset_prompt_search_stored"
OLD_INDEX = "asset_prompt_search"
# The configuration gallery/queries.py's SEARCH_CONFIG names.
EXPRESSION = "to_tsvector('english'::regconfig, COALESCE(\"prompt\", ''))"


def add_column(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE gallery_asset ADD COLUMN IF NOT EXISTS {COLUMN} tsvector "
            f"GENERATED ALWAYS AS ({EXPRESSION}) STORED"
        )
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON gallery_asset USING gin ({COLUMN})")
        schema_editor.execute(f"DROP INDEX IF EXISTS {OLD_INDEX}")


def drop_column(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {OLD_INDEX} ON gallery_asset USING gin ({EXPRESSION})")
        schema_editor.execute(f"ALTER TABLE gallery_asset DROP COLUMN IF EXISTS {COLUMN}")


class Migration(migrations.Migration):
    dependencies = [("gallery", "0006_gallery_filter_indexes")]

    operations = [migrations.RunPython(add_column, drop_column, elidable=False)]
