from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Write a small random-weight Stable Diffusion model (diffusers layout) into the models dir."

    def add_arguments(self, parser):
        parser.add_argument("--name", default=settings.STUDIO_DEFAULT_MODEL)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--force", action="store_true", help="Replace an existing folder of that name.")

    def handle(self, *args, **options):
        from generation.engine.demo import build_random_model

        target = Path(settings.MODELS_DIR) / options["name"]
        if target.exists() and not options["force"]:
            raise CommandError(f"{target} exists; pass --force to replace it.")
        build_random_model(target, seed=options["seed"])
        self.stdout.write(f"Wrote {target}")
