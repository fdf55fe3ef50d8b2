from django.core.management.base import BaseCommand, CommandError

from generation import library
from generation.engine.families import FAMILIES
from studio.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Install a model from a path on this machine: a diffusers folder or a single-file .safetensors "
        "checkpoint (SD 1.x, SD 2.x, SDXL, SD3, FLUX). With --lora, install a LoRA instead; with "
        "--controlnet, a ControlNet (a diffusers ControlNetModel or FluxControlNetModel folder); with "
        "--preview-decoder FAMILY, a tiny preview decoder (AutoencoderTiny folder) for that family; with "
        "--ip-adapter, an IP-Adapter (its .safetensors file, with image_encoder/ beside it); with "
        "--annotator, a ControlNet depth or pose annotator (a transformers DPT, Depth Anything or ViTPose "
        "folder)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="A diffusers folder or a .safetensors file.")
        parser.add_argument("--name", default="", help="Its name in the studio (the id is made from it).")
        parser.add_argument("--lora", action="store_true", help="The file is a LoRA.")
        parser.add_argument("--controlnet", action="store_true", help="The folder is a ControlNet.")
        parser.add_argument(
            "--ip-adapter", action="store_true", help="The file (or its folder) is an IP-Adapter."
        )
        parser.add_argument(
            "--preview-decoder",
            default="",
            choices=["", *FAMILIES],
            metavar="FAMILY",
            help="The folder is a tiny decoder (AutoencoderTiny) for this family's live previews.",
        )
        parser.add_argument(
            "--annotator",
            action="store_true",
            help="The folder is a ControlNet annotator (depth: DPT or Depth Anything; pose: ViTPose).",
        )
        parser.add_argument(
            "--family",
            default="",
            choices=["", *FAMILIES],
            help="A LoRA's or ControlNet's family, when its files do not tell; an IP-Adapter's, when several "
            "fit.",
        )

    def handle(self, *args, **options):
        try:
            if options["annotator"]:
                if options["lora"] or options["family"] or options["preview_decoder"]:
                    raise CommandError(
                        "An annotator's kind is read from its files; leave out --lora, --family and "
                        "--preview-decoder."
                    )
                done = library.do_install_annotator(None, options["path"], options["name"])
                self.stdout.write(
                    f"Installed the {done.family} annotator {done.id!r} ({done.name}, "
                    f"{done.size_bytes:,} bytes, sha256 {done.sha256})"
                )
                return
            if options["preview_decoder"]:
                if options["lora"] or options["family"]:
                    raise CommandError(
                        "--preview-decoder names the family itself; leave out --lora and --family."
                    )
                done = library.do_install_preview_decoder(
                    None, options["path"], options["preview_decoder"], name=options["name"]
                )
                self.stdout.write(
                    f"Installed the {FAMILIES[done.family].label} preview decoder {done.name!r} "
                    f"({done.size_bytes:,} bytes, sha256 {done.sha256})"
                )
                return
            if options["ip_adapter"]:
                if options["lora"]:
                    raise CommandError("--ip-adapter and --lora are different kinds; give one.")
                done = library.do_install_ip_adapter(
                    None, options["path"], name=options["name"], family=options["family"]
                )
                self.stdout.write(
                    f"Installed IP-Adapter {done.id!r} ({done.name}, {FAMILIES[done.family].label}, "
                    f"{done.size_bytes:,} bytes, sha256 {done.sha256})"
                )
                return
            if options["lora"] and options["controlnet"]:
                raise CommandError("Choose one of --lora and --controlnet.")
            if options["lora"]:
                done = library.do_install_lora(
                    None, options["path"], name=options["name"], family=options["family"]
                )
            elif options["controlnet"]:
                done = library.do_install_controlnet(
                    None, options["path"], name=options["name"], family=options["family"]
                )
            else:
                if options["family"]:
                    raise CommandError(
                        "--family is for LoRAs and ControlNets; a model's family is read from its files."
                    )
                done = library.do_install_model(None, options["path"], name=options["name"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        kind = "LoRA" if options["lora"] else "ControlNet" if options["controlnet"] else "model"
        self.stdout.write(
            f"Installed {kind} {done.id!r} ({done.name}, {FAMILIES[done.family].label}, "
            f"{done.size_bytes:,} bytes, sha256 {done.sha256})"
        )
