from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from studio.backup import BackupError, restore

from .backup import progress_bars


class Command(BaseCommand):
    help = (
        "Read an archive from `manage.py backup` into this empty installation (a new database and media "
        "storage), after checking every file's sha256."
    )

    def add_arguments(self, parser):
        parser.add_argument("archive", type=Path)
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, **options):
        if not options["archive"].is_file():
            raise CommandError(f"No archive at {options['archive']}.")
        try:
            result = restore(options["archive"], progress=progress_bars(not options["no_progress"]))
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Restored the backup of {result['created_at']}: {result['media']['files']} media files, "
            f"model records of {', '.join(result['models_restored']) or 'no model'}."
        )
        if result["models_skipped"]:
            self.stdout.write(
                f"Kept the models already installed here: {', '.join(result['models_skipped'])}."
            )
        if not result["models"]["with_weights"]:
            self.stdout.write(
                "Model weights were not in the backup: install them again into STUDIO_MODELS_DIR."
            )
