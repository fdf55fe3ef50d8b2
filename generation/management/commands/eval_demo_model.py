"""``python manage.py eval_demo_model``: does the demo model draw what held-out prompts ask for?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Generate held-out prompts × seeds with a demo-vocabulary model, check background, colour, position "
        "and shape by pixel statistics, print the table, save a contact sheet; fail if a target is missed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from generation.engine.training import BUNDLED_MODEL_DIR

        parser.add_argument("--model", type=Path, default=BUNDLED_MODEL_DIR, help="Model folder.")
        parser.add_argument("--prompts", type=int, default=40)
        parser.add_argument("--seeds", type=int, default=4)
        parser.add_argument("--steps", type=int, default=None, help="Default: the model's.")
        parser.add_argument("--guidance", type=float, default=None, help="Default: the model's.")
        parser.add_argument("--scheduler", default=None, help="Default: the model's.")
        parser.add_argument(
            "--validation",
            action="store_true",
            help="Prompts from training colour–shape pairs instead (for tuning settings such as guidance).",
        )
        parser.add_argument(
            "--sheet", type=Path, default=None, help="Contact sheet PNG (default: in the data dir)."
        )
        parser.add_argument(
            "--speed",
            action="store_true",
            help='Only time one picture at the model\'s defaults; print {"seconds_per_image": ...} as JSON.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from generation.engine import evaluation

        model: Path = options["model"].resolve()
        if not (model / "model_index.json").exists():
            raise CommandError(f"{model} is not a model folder (no model_index.json)")
        if options["speed"]:
            seconds = evaluation.time_generation(model)
            self.stdout.write(json.dumps({"seconds_per_image": round(seconds, 3)}))
            return
        result = evaluation.evaluate(
            model,
            options["prompts"],
            options["seeds"],
            steps=options["steps"],
            guidance=options["guidance"],
            scheduler=options["scheduler"],
            held_out=not options["validation"],
        )
        self.stdout.write(f"Model: {model}")
        self.stdout.write(evaluation.table(result))
        sheet: Path = options["sheet"] or Path(settings.DATA_DIR) / "demo_eval_contact_sheet.png"
        sheet.parent.mkdir(parents=True, exist_ok=True)
        evaluation.contact_sheet(result).save(sheet)
        self.stdout.write(f"Contact sheet: {sheet}")
        failed = result.failures()
        if failed:
            raise CommandError("Missed targets: " + ", ".join(evaluation.CHECK_LABELS[k] for k in failed))
        self.stdout.write(self.style.SUCCESS("All targets met."))
