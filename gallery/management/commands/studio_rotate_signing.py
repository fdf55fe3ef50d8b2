from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from gallery import credentials


class Command(BaseCommand):
    help = (
        "Replace the studio's own Content Credentials signing certificate (--new-root: its root too). "
        "Images signed before stay valid and trusted: old roots remain trust anchors."
    )

    def add_arguments(self, parser):
        parser.add_argument("--new-root", action="store_true", help="Make a new root certificate as well.")

    def handle(self, *args, **options):
        try:
            made = credentials.rotate_own_credentials(new_root=options["new_root"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"New signing certificate: {made['signing']}")
        self.stdout.write(f"Root: {made['root']}")
