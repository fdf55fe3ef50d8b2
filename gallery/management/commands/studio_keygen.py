from django.core.management.base import BaseCommand

from gallery.encryption import generate_key


class Command(BaseCommand):
    help = "Print a new master key for encryption at rest (32 random bytes, URL-safe base64)."
    requires_system_checks: list[str] = []

    def handle(self, *args, **options):
        self.stdout.write(generate_key())
