from django.core.management.base import BaseCommand, CommandError

from generation import library
from studio.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Remove an installed model (or, with --lora, a LoRA; with --controlnet, a ControlNet; with "
        "--annotator, a ControlNet annotator) from the models dir."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", help="The model's (or LoRA's) id.")
        parser.add_argument("--lora", action="store_true", help="Remove a LoRA.")
        parser.add_argument("--controlnet", action="store_true", help="Remove a ControlNet.")
        parser.add_argument("--annotator", action="store_true", help="Remove a ControlNet annotator.")

    def handle(self, *args, **options):
        if sum(bool(options[k]) for k in ("lora", "controlnet", "annotator")) > 1:
            raise CommandError("Choose one of --lora, --controlnet and --annotator.")
        kind = next((k for k in ("lora", "controlnet", "annotator") if options[k]), "model")
        try:
            library.do_remove(None, kind, options["id"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        labels = {"model": "model", "lora": "LoRA", "controlnet": "ControlNet", "annotator": "annotator"}
        self.stdout.write(f"Removed {labels[kind]} {options['id']!r}")
