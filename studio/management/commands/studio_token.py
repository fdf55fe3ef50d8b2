from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studio.services import do_create_token


class Command(BaseCommand):
    help = "Create an API token for a user and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="created with studio_token")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"No active user named {options['username']!r}.")
        _, token = do_create_token(user, options["name"])
        self.stdout.write(token)
