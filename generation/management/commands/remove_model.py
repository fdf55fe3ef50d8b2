from django.core.management.base import BaseCommand, CommandError

from generation import library
from studio.errors import ServiceError


class Command(BaseCommand):
    help = "Remove an installed model (or, with --lora, a LoRA) from the models dir."

    def add_arguments(self, parser):
        parser.add_argument("id", help="The model's (or LoRA's) id.")
        parser.add_argument("--lora", action="store_true", help="Remove a LoRA.")

    def handle(self, *args, **options):
        kind = "lora" if options["lora"] else "model"
        try:
            library.do_remove(None, kind, options["id"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Removed {'LoRA' if options['lora'] else 'model'} {options['id']!r}")
