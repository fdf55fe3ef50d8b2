from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from gallery import keyops, storage

from ._progress import bar


class Command(BaseCommand):
    help = (
        "Encrypt the files stored before encryption at rest was switched on, in place. Safe to stop and run "
        "again: it goes on where it stopped. The studio may keep running."
    )

    def handle(self, *args, **options):
        if not storage.encryption_enabled():
            raise CommandError(
                "Encryption at rest is off: set STUDIO_ENCRYPTION_KEY (or STUDIO_ENCRYPTION_KEY_FILE, or "
                "STUDIO_ENCRYPT_AT_REST=true in the embedded mode) first."
            )
        counts = keyops.encrypt_store(keyops.raw_store(default_storage), storage.current_keyring(), bar)
        self.stdout.write(f"Encrypted {counts.changed} files; {counts.skipped} were encrypted already.")
