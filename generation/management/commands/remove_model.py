from django.core.management.base import BaseCommand, CommandError

from generation import library
from studio.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Remove an installed model (or, with --lora, a LoRA; with --controlnet, a ControlNet) from the "
        "models dir."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", help="The model's (or LoRA's) id.")
        parser.add_argument("--lora", action="store_true", help="Remove a LoRA.")
        parser.add_argument("--controlnet", action="store_true", help="Remove a ControlNet.")

    def handle(self, *args, **options):
        kind = "lora" if options["lora"] else "controlnet" if options["controlnet"] else "model"
        try:
            library.do_remove(None, kind, options["id"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        label = {"lora": "LoRA", "controlnet": "ControlNet", "model": "model"}[kind]
        self.stdout.write(f"Removed {label} {options['id']!r}")
