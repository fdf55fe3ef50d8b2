"""schemathesis hooks for the studio's fuzz run (loaded through SCHEMATHESIS_HOOKS).

A schema can say "a uuid", "a PNG data URL" or "a username", but not which ones exist: for cases generated as
valid, these hooks put the rows the test made in those places (an image of the project, a member, a real
PNG). They drop valid-looking cases that break rules no JSON schema can state (a repaint too weak to change
anything in its steps, a date range that ends before it starts). Cases generated as invalid pass untouched.
"""

from __future__ import annotations

import base64
import io
import os
import uuid

import schemathesis
from PIL import Image

ASSET = os.environ.get("FUZZ_ASSET", "")
MEMBER = os.environ.get("FUZZ_MEMBER", "")
ADMIN = os.environ.get("FUZZ_ADMIN", "")
MAX_SIZE = int(os.environ.get("FUZZ_MAX_SIZE", "256"))  # the largest side the installed models make
# The rows a valid case's path names: the project, and an image, a job and a board of it (deletions get rows
# of their own, so the other operations keep theirs).
PATH_ROWS = [
    ("DELETE", "/assets/{id}", "FUZZ_ASSET_TO_DELETE"),
    ("DELETE", "/boards/{id}", "FUZZ_BOARD_TO_DELETE"),
    ("DELETE", "/styles/{id}", "FUZZ_STYLE_TO_DELETE"),
    (None, "/assets/", "FUZZ_ASSET"),
    (None, "/jobs/", "FUZZ_JOB"),
    (None, "/boards/", "FUZZ_BOARD"),
    (None, "/styles/", "FUZZ_STYLE"),
]


def _png(mode: str = "RGB", size: tuple[int, int] = (64, 64), fill: int = 255) -> bytes:
    buffer = io.BytesIO()
    image = Image.new(mode, size, fill if mode == "L" else (30, 90, 200))
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# generation.services' defaults, for requests that leave the strength out.
DEFAULT_STRENGTH = {"img2img": 0.6, "inpaint": 0.85, "upscale": 0.3, "variation": 0.3}
MASK = "data:image/png;base64," + base64.b64encode(_png("L")).decode()
PNG = _png()
PNG_B64 = base64.b64encode(PNG).decode()
MASK_B64 = base64.b64encode(_png("L")).decode()
# (the same mask for a request that inverts it: black there, so that inverted it repaints everything)
BLACK_MASK_B64 = base64.b64encode(_png("L", fill=0)).decode()


def _positive(case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context, case):
    if not _positive(case):
        return case
    path = case.operation.path
    params = case.path_parameters
    deleting_project = path == "/projects/{slug}" and case.method.upper() == "DELETE"
    if params and deleting_project and case.meta.phase.name == "stateful":
        # A link names a project an earlier call made: delete that one (never the fuzzed one), as asked.
        if params["slug"] == os.environ["FUZZ_PROJECT"]:
            params["slug"] = os.environ["FUZZ_PROJECT_TO_DELETE"]
        case.query = {**(case.query or {}), "confirm": params["slug"]}
    elif params:
        if "slug" in params:
            params["slug"] = os.environ["FUZZ_PROJECT"]
            if path == "/projects/{slug}" and case.method.upper() == "DELETE":
                # A project of its own to delete, named as the confirmation asks.
                params["slug"] = os.environ["FUZZ_PROJECT_TO_DELETE"]
                case.query = {**(case.query or {}), "confirm": params["slug"]}
        if "id" in params:
            for method, prefix, variable in PATH_ROWS:
                if (method is None or method == case.method.upper()) and (
                    path == prefix if method else path.startswith(prefix)
                ):
                    whole = prefix.startswith(("/boards", "/styles"))
                    params["id"] = int(os.environ[variable]) if whole else os.environ[variable]
                    break
    body = case.body if isinstance(case.body, dict) else None
    if body is not None:
        if "init_asset" in body:
            body["init_asset"] = ASSET
        if path.endswith("/jobs") and body.get("style") is not None:
            body["style"] = int(os.environ["FUZZ_STYLE"])  # a style of the project, with nothing locked
        if path == "/styles/{id}" and case.method.upper() == "PATCH" and body.get("locks"):
            # The jobs' style stays unlocked (a stateful edit may otherwise lock what a later job changes).
            body["locks"] = []
        if "styles" in path and body.get("references"):
            body["references"] = [ASSET]
        if path.endswith("/jobs") and isinstance(body.get("references"), list):
            for reference in body["references"]:
                if isinstance(reference, dict) and "image" in reference:
                    reference["image"] = ASSET  # an image of the project
        # ControlNet units name an image of the project (a job's control image; a style's, if it has one).
        for unit in body.get("controlnets") or [] if path.endswith("/jobs") else []:
            if isinstance(unit, dict):
                unit["image"] = ASSET
        for unit in body.get("controlnet_defaults") or [] if "styles" in path else []:
            if isinstance(unit, dict) and unit.get("image") is not None:
                unit["image"] = ASSET
        if "mask" in body and path.endswith("/jobs"):
            body["mask"] = MASK
        if path.endswith("/jobs") and isinstance(body.get("regions"), list):
            _real_region_masks(body)
        if path.endswith("/members") and "username" in body:
            body["username"] = ADMIN  # the caller: any other member may have been deactivated by now
        if path.endswith("/items") and "asset" in body:
            body["asset"] = ASSET
        if (path.endswith("/uploads") or path == "/verify") and "image" in body:
            body["image"] = PNG
        # The AUTOMATIC1111 API takes its images in base64.
        if path in ("/img2img",) and body.get("init_images"):
            body["init_images"] = [PNG_B64]
        if path == "/img2img" and body.get("mask"):
            body["mask"] = BLACK_MASK_B64 if body.get("inpainting_mask_invert") else MASK_B64
        if path == "/png-info" and "image" in body:
            body["image"] = PNG_B64
        scripts = body.get("alwayson_scripts") if path in ("/txt2img", "/img2img") else None
        controlnet = scripts.get("controlnet") if isinstance(scripts, dict) else None
        for unit in (controlnet or {}).get("args") or [] if isinstance(controlnet, dict) else []:
            if isinstance(unit, dict):
                for key in ("image", "input_image"):
                    if isinstance(unit.get(key), str):
                        unit[key] = PNG_B64
                    elif isinstance(unit.get(key), dict):
                        unit[key]["image"] = PNG_B64
    if case.headers and "Range" in case.headers:
        case.headers["Range"] = "bytes=0-"  # a range within the file: the schema cannot say how long it is
    if case.query:
        if case.query.get("author"):
            case.query["author"] = MEMBER
        if case.query.get("ids"):
            case.query["ids"] = ASSET
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    """Board names are unique in a project, and a case may be sent more than once: name it at each send. The
    shared image is never the one deleted."""
    if _positive(case) and case.method.upper() == "DELETE" and case.operation.path == "/assets/{id}":
        # A stateful link may name the shared image (the one every other operation uses): delete the image
        # kept for deleting instead, whatever filled the path.
        spare = os.environ["FUZZ_ASSET_TO_DELETE"]
        if case.path_parameters:
            case.path_parameters["id"] = spare
        if isinstance(kwargs.get("url"), str):
            kwargs["url"] = kwargs["url"].replace(f"/assets/{ASSET}", f"/assets/{spare}")
    body = case.body
    if _positive(case) and case.operation.path.endswith("/boards") and isinstance(body, dict):
        if isinstance(body.get("name"), str):
            body["name"] = f"{body['name'].split(' ~')[0][:60]} ~{uuid.uuid4().hex}"


def _outpaint_possible(body: dict) -> bool:
    """An outpainting of the shared 64×64 image that the studio can make: exactly one of ``extend`` (whole
    multiples of 8, at least one side) and ``aspect`` (one that grows a side by 8 or more), within the largest
    side."""
    extend, aspect = body.get("extend"), body.get("aspect")
    if (extend is None) == (aspect is None):
        return False
    if extend is not None:
        sides = [int(extend.get(side) or 0) for side in ("left", "right", "top", "bottom")]
        if not any(sides) or any(side % 8 for side in sides):
            return False
        return 64 + max(sides[0] + sides[1], sides[2] + sides[3]) <= MAX_SIZE
    try:
        width, height = (float(part) for part in str(aspect).split(":"))
    except ValueError:
        return False
    if width <= 0 or height <= 0:
        return False
    # The long side rounds to a multiple of 8: a ratio this close to square leaves the image as it is.
    long_side = max(64, int(round(64 * max(width / height, height / width) / 8)) * 8)
    return 64 < long_side <= MAX_SIZE


def _job_size(body: dict) -> tuple[int, int]:
    """A job's output size: its own, else the shared 64×64 image's or the default model's (64)."""
    return int(body.get("width") or 64), int(body.get("height") or 64)


def _real_region_masks(body: dict) -> None:
    """Each region's mask as a real PNG of the job's size with its left half painted: the schema can say
    "a PNG data URL", not which ones are a readable, non-empty mask of the image's aspect ratio."""
    width, height = _job_size(body)
    image = Image.new("L", (width, height), 0)
    image.paste(255, (0, 0, max(1, width // 2), height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    painted = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    for region in body["regions"]:
        if isinstance(region, dict) and "mask" in region:
            region["mask"] = painted


def _regions_possible(body: dict) -> bool:
    """Every box region lies within the job's image with x0 < x1 and y0 < y1."""
    width, height = _job_size(body)
    for region in body.get("regions") or []:
        box = region.get("box") if isinstance(region, dict) else None
        if box is not None:
            x0, y0, x1, y1 = box
            if not (x0 < x1 <= width and y0 < y1 <= height):
                return False
    return True


def _controlnets_possible(path: str, body: dict) -> bool:
    """ControlNet units the studio can run: each starting before it ends (jobs, styles), and AUTOMATIC1111
    units with canny's own thresholds and an image (txt2img has no start image to fall back on)."""
    for unit in body.get("controlnets") or [] if path.endswith("/jobs") else []:
        if isinstance(unit, dict) and float(unit.get("start", 0)) >= float(unit.get("end", 1)):
            return False
    for unit in body.get("controlnet_defaults") or [] if "styles" in path else []:
        if isinstance(unit, dict) and float(unit.get("guidance_start", 0)) >= float(
            unit.get("guidance_end", 1)
        ):
            return False
    scripts = body.get("alwayson_scripts") if path in ("/txt2img", "/img2img") else None
    controlnet = scripts.get("controlnet") if isinstance(scripts, dict) else None
    for unit in (controlnet or {}).get("args") or [] if isinstance(controlnet, dict) else []:
        if not isinstance(unit, dict) or not unit.get("enabled", True) or unit.get("model", "None") == "None":
            continue
        if str(unit.get("module", "none")).lower() == "canny" and (
            unit.get("threshold_a", -1) not in (-1, 100) or unit.get("threshold_b", -1) not in (-1, 200)
        ):
            return False
        if path == "/txt2img" and not (unit.get("image") or unit.get("input_image")):
            return False
    return True


@schemathesis.hook
def filter_case(context, case):
    if not _positive(case):
        return True
    body = case.body if isinstance(case.body, dict) else {}
    mode = body.get("mode")
    if mode in DEFAULT_STRENGTH:
        default = 0.6 if body.get("variation") == "strong" else DEFAULT_STRENGTH[mode]
        strength = body.get("strength") or default
        steps = body.get("steps") or 20
        if int(steps * strength) < 1:
            return False  # too weak to repaint a single step: refused with a sentence, by design
    if mode == "outpaint" and not _outpaint_possible(body):
        return False  # exactly one of extend and aspect, and a canvas the model can make: refused by design
    if mode in (None, "txt2img", "img2img", "inpaint") and not _regions_possible(body):
        return False  # a box outside the image, or empty: refused with a sentence, by design
    references = body.get("references")
    if isinstance(references, list) and any(
        isinstance(r, dict) and r.get("kind") == "ip_adapter" for r in references
    ):
        return False  # an image prompt needs an installed IP-Adapter of the model's family: none is installed
    path = case.operation.path
    if path == "/admin/annotators" and case.method.upper() == "POST":
        return False  # which paths on the server hold an annotator, no schema can say: refused, by design
    if not _controlnets_possible(path, body):
        return False
    if path == "/img2img" and int((body.get("steps") or 50) * body.get("denoising_strength", 0.75)) < 1:
        return False  # AUTOMATIC1111's img2img: the same rule
    if path == "/txt2img" and body.get("enable_hr"):
        strength = body.get("denoising_strength") or 0.7
        if int((body.get("hr_second_pass_steps") or body.get("steps") or 50) * strength) < 1:
            return False
        side = max(body.get("width") or 64, body.get("height") or 64)
        if side * (body.get("hr_scale") or 2) > MAX_SIZE:
            return False  # the upscaled image would be larger than the model makes, refused by design
    query = case.query or {}
    since, until = query.get("since"), query.get("until")
    if isinstance(since, str) and isinstance(until, str) and until[:10] <= since[:10]:
        return False  # a range that ends before it starts is refused, by design
    return True
