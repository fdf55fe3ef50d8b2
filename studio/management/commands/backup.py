from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from studio.backup import BackupError, backup


def progress_bars(enabled: bool):
    def bar(what: str, total: int):
        return tqdm(total=total, desc=what, unit="B", unit_scale=True, disable=not enabled)

    return bar


class Command(BaseCommand):
    help = (
        "Write one consistent archive of this installation (database, media as stored, model records, "
        "a manifest with sha256s) while it runs. DEST is a file, or a folder for a dated one."
    )

    def add_arguments(self, parser):
        parser.add_argument("dest", type=Path)
        parser.add_argument("--with-weights", action="store_true", help="include the models' weights")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, **options):
        try:
            manifest = backup(
                options["dest"],
                with_weights=options["with_weights"],
                progress=progress_bars(not options["no_progress"]),
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        media = manifest["media"]
        self.stdout.write(
            f"Backup written to {manifest['path']}: {manifest['database']['vendor']} database, "
            f"{media['files']} media files, {manifest['models']['files']} model files."
        )
        if media["missing"]:
            self.stderr.write(
                f"{len(media['missing'])} file(s) the database refers to were deleted while the backup ran "
                f"(listed in its manifest), first: {media['missing'][0]}"
            )
