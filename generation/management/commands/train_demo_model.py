"""``python manage.py train_demo_model``: train the bundled demo model from scratch on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Train the tiny demo text-to-image model on procedurally drawn scenes (CPU, reproducible from "
        "--seed), save it in diffusers layout, evaluate it and write its model card."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from generation.engine.training import BUNDLED_MODEL_DIR, TrainingConfig

        defaults = TrainingConfig()
        parser.add_argument("--out", type=Path, default=BUNDLED_MODEL_DIR, help="Model folder to (re)write.")
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--steps", type=int, default=defaults.steps, help="UNet + text encoder steps.")
        parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
        parser.add_argument("--batch", type=int, default=defaults.batch)
        parser.add_argument("--lr", type=float, default=defaults.lr)
        parser.add_argument(
            "--object-weight",
            type=float,
            default=defaults.object_weight,
            help="Extra weight of the loss under shapes (0: a plain mean).",
        )
        parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads.")
        parser.add_argument("--name", default="Demo shapes", help="Name shown in the studio.")
        parser.add_argument(
            "--snapshot-every", type=int, default=0, help="Save the EMA weights beside --out every N steps."
        )
        parser.add_argument("--no-eval", action="store_true", help="Skip the evaluation and timing.")
        parser.add_argument("--eval-prompts", type=int, default=40)
        parser.add_argument("--eval-seeds", type=int, default=4)

    def handle(self, *args: Any, **options: Any) -> None:
        from generation.engine import evaluation
        from generation.engine.training import (
            TrainingConfig,
            folder_megabytes,
            render_model_card,
            train_demo_model,
        )

        config = replace(
            TrainingConfig(),
            seed=options["seed"],
            steps=options["steps"],
            vae_steps=options["vae_steps"],
            batch=options["batch"],
            lr=options["lr"],
            threads=options["threads"],
            object_weight=options["object_weight"],
            snapshot_every=options["snapshot_every"],
        )
        out: Path = options["out"].resolve()
        record = train_demo_model(out, config, name=options["name"], say=self.stdout.write)
        record["name"] = options["name"]
        if not options["no_eval"]:
            self.stdout.write("Evaluating on held-out prompts …")
            result = evaluation.evaluate(out, options["eval_prompts"], options["eval_seeds"])
            text = evaluation.table(result)
            self.stdout.write(text)
            sheet = Path(settings.DATA_DIR) / "demo_eval_contact_sheet.png"
            sheet.parent.mkdir(parents=True, exist_ok=True)
            evaluation.contact_sheet(result).save(sheet)
            self.stdout.write(f"Contact sheet: {sheet}")
            record["evaluation"] = {"table": text, "scores": result.scores(), "failures": result.failures()}
            record["seconds_per_image"] = time_in_fresh_process(out)
            self.stdout.write(f"20-step generation: {record['seconds_per_image']:.2f} s per picture")
        (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
        (out / "MODEL_CARD.md").write_text(render_model_card(record, out))
        self.stdout.write(f"Model folder {out}: {folder_megabytes(out):.1f} MB")


def time_in_fresh_process(model: Path) -> float:
    """Seconds for one picture, timed as the studio's worker runs it: in a process of its own, without any
    passive OpenMP waits set for training on a shared machine (they make inference about twice as slow on
    an idle CPU)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(  # noqa: S603 - our own interpreter and command
        [sys.executable, "manage.py", "eval_demo_model", "--model", str(model), "--speed"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds_per_image"])
