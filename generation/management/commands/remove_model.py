from django.core.management.base import BaseCommand, CommandError

from generation import library
from studio.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Remove an installed model (or, with --lora, a LoRA; with --annotator, a ControlNet annotator) from "
        "the models dir."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", help="The model's (or LoRA's) id.")
        parser.add_argument("--lora", action="store_true", help="Remove a LoRA.")
        parser.add_argument("--annotator", action="store_true", help="Remove a ControlNet annotator.")

    def handle(self, *args, **options):
        if options["lora"] and options["annotator"]:
            raise CommandError("Choose one of --lora and --annotator.")
        kind = "annotator" if options["annotator"] else "lora" if options["lora"] else "model"
        try:
            library.do_remove(None, kind, options["id"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        labels = {"model": "model", "lora": "LoRA", "annotator": "annotator"}
        self.stdout.write(f"Removed {labels[kind]} {options['id']!r}")
