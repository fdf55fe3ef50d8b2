"""Build a breached-password list for ``STUDIO_BREACHED_PASSWORDS_FILE`` from plain-text password lists
(one password a line) or SHA-1 digest files (``DIGEST`` or ``DIGEST:count`` lines), in any mix."""

import re

from django.core.management.base import BaseCommand, CommandError

from studio.breached import sha1_hex

DIGEST = re.compile(rb"^[0-9A-Fa-f]{40}(:\d+)?$")


class Command(BaseCommand):
    help = "Write a sorted SHA-1 digest file of breached passwords from password lists or digest files."

    def add_arguments(self, parser):
        parser.add_argument("inputs", nargs="+", help="text files: passwords or SHA-1 digests, one a line")
        parser.add_argument("--output", required=True)

    def handle(self, *args, **options):
        digests: set[bytes] = set()
        for name in options["inputs"]:
            try:
                with open(name, "rb") as handle:
                    for raw in handle:
                        line = raw.rstrip(b"\r\n")
                        if not line:
                            continue
                        if DIGEST.match(line):
                            digests.add(line[:40].upper())
                        else:
                            digests.add(sha1_hex(line.decode("utf-8", "replace")))
            except OSError as exc:
                raise CommandError(f"Cannot read {name}: {exc.strerror}.") from exc
        with open(options["output"], "wb") as out:
            for digest in sorted(digests):
                out.write(digest + b"\n")
        self.stdout.write(f"{len(digests)} digests written to {options['output']}")
