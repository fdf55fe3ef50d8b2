import os

from django.core.management.base import BaseCommand

from studio.launcher import Launcher


class Command(BaseCommand):
    help = "Run the whole studio on this machine (web server, worker, private Redis). Ctrl-C stops it."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args, **options):
        launcher = Launcher(
            port=options["port"],
            admin_username=os.environ.get("STUDIO_ADMIN_USERNAME", "admin"),
            admin_password=os.environ.get("STUDIO_ADMIN_PASSWORD") or None,
            log=lambda line: self.stdout.write(line),
        )
        raise SystemExit(launcher.run())
