from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Write a small random-weight Stable Diffusion model (diffusers layout) into the models dir."
    requires_system_checks: list[str] = []  # (the launcher runs it at every start: it must be quick)

    def add_arguments(self, parser):
        parser.add_argument("--name", default=settings.STUDIO_DEFAULT_MODEL)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--force", action="store_true", help="Replace an existing folder of that name.")
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="Do nothing when a model of that name is installed already (the studio's first start).",
        )

    def handle(self, *args, **options):
        from generation.engine import registry

        if options["if_missing"] and registry.get_model(options["name"]) is not None:
            return
        from generation.engine.demo import build_random_model  # (torch and diffusers: only to build)

        if options["if_missing"]:
            self.stdout.write(f"Building the default model '{options['name']}' in {settings.MODELS_DIR} …")
        target = Path(settings.MODELS_DIR) / options["name"]
        if target.exists() and not options["force"]:
            raise CommandError(f"{target} exists; pass --force to replace it.")
        build_random_model(target, seed=options["seed"])
        self.stdout.write(f"Wrote {target}")
