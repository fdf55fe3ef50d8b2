import time

from django.core.management.base import BaseCommand

from generation.services import do_sweep_stale_jobs


class Command(BaseCommand):
    help = "Re-queue jobs whose worker died and re-send lost queued jobs (once, or every N seconds)."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0, help="Repeat every N seconds until stopped.")

    def handle(self, *args, **options):
        while True:
            counts = do_sweep_stale_jobs()
            if any(counts.values()) or not options["every"]:
                self.stdout.write(" ".join(f"{k}={v}" for k, v in counts.items()))
            if not options["every"]:
                return
            time.sleep(options["every"])
