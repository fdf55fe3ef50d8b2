from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from gallery import encryption, keyops, storage

from ._progress import bar


class Command(BaseCommand):
    help = (
        "Re-wrap every stored file's data key with the current master key (images are not rewritten). "
        "With --new-key (keys kept in files, as in the embedded mode), first make a new current key and "
        "keep the old one as a previous key. Safe to stop and run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--new-key", action="store_true", help="Make a new master key first.")

    def handle(self, *args, **options):
        if not storage.encryption_enabled():
            raise CommandError("Encryption at rest is off: there are no data keys to re-wrap.")
        if options["new_key"]:
            self.make_new_key()
        keyring = storage.current_keyring()
        counts = keyops.rewrap_store(keyops.raw_store(default_storage), keyring, bar)
        self.stdout.write(
            f"Re-wrapped {counts.changed} files with master key {keyring.current_id.hex()}; "
            f"{counts.skipped} had it already"
            + (
                f"; {counts.plaintext} are not encrypted (run studio_encrypt_store)"
                if counts.plaintext
                else ""
            )
            + "."
        )
        if keyring.previous:
            self.stdout.write(
                "Every file now uses the current key. Once every studio process has restarted (or, in the "
                "embedded mode, at once), the previous keys may be removed from "
                f"{settings.STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE or 'STUDIO_ENCRYPTION_PREVIOUS_KEYS'}."
            )

    def make_new_key(self) -> None:
        key_file = settings.STUDIO_ENCRYPTION_KEY_FILE
        previous_file = settings.STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE
        if settings.STUDIO_ENCRYPTION_KEY or not key_file or not previous_file:
            raise CommandError(
                "The key comes from STUDIO_ENCRYPTION_KEY: make a new one with `manage.py studio_keygen`, "
                "set it as STUDIO_ENCRYPTION_KEY with the old one in STUDIO_ENCRYPTION_PREVIOUS_KEYS, "
                "restart the studio, then run this command without --new-key."
            )
        old = Path(key_file).read_text().strip()
        kept = Path(previous_file).read_text() if Path(previous_file).exists() else ""
        # The old key joins the previous keys before the new one replaces it: stopped between the two
        # steps, every file stays readable.
        _replace_private(Path(previous_file), (kept.rstrip("\n") + "\n" + old + "\n").lstrip("\n"))
        _replace_private(Path(key_file), encryption.generate_key() + "\n")
        self.stdout.write(f"Made a new master key in {key_file}; the old one is kept in {previous_file}.")


def _replace_private(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.new")
    temp.unlink(missing_ok=True)
    encryption.write_key_file(temp, text.rstrip("\n"))
    temp.replace(path)
