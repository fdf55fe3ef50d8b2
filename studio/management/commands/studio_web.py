import os

from django.core.management.base import BaseCommand

from studio.launcher import WebServer, web_processes


class Command(BaseCommand):
    help = (
        "Serve the web tier (pages, API, websockets) with several daphne processes sharing one port: "
        "the command web containers and hosts run. Restarts a process that dies; SIGTERM stops them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("STUDIO_WEB_BIND", "0.0.0.0"))  # noqa: S104
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--processes",
            type=int,
            default=0,
            help="daphne processes (default: STUDIO_WEB_PROCESSES, else one per core)",
        )

    def handle(self, *args, **options):
        processes = options["processes"] or web_processes()
        server = WebServer(
            options["bind"], options["port"], processes, log=lambda line: self.stdout.write(line)
        )
        raise SystemExit(server.run())
