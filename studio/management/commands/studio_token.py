from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studio.errors import ServiceError
from studio.models import TokenScope
from studio.services import do_create_token


class Command(BaseCommand):
    help = "Create an API token for a user and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="created with studio_token")
        parser.add_argument(
            "--scope",
            choices=TokenScope.values,
            help="read, generate or admin (default: generate, or admin for a site admin)",
        )
        parser.add_argument("--project", metavar="SLUG", help="the token's default project")
        parser.add_argument("--expires-days", type=int, metavar="DAYS", help="expire after DAYS days")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"No active user named {options['username']!r}.")
        try:
            _, token = do_create_token(
                user,
                options["name"],
                scope=options["scope"],
                default_project=options["project"],
                expires_in_days=options["expires_days"],
            )
        except ServiceError as exc:
            detail = "; ".join(message for messages in exc.errors.values() for message in messages)
            raise CommandError(f"{exc.message} {detail}".strip()) from exc
        self.stdout.write(token)
