"""Project styles: writes (create, edit, delete, copy) and how a style shapes a job.

A style is a name over versions. Every edit writes a new ``StyleVersion``; a job records the style's id, name
and the version it used (``JobParams.style``), and its assets keep that, so an edit never rewrites what an
older image says it was made with. A deleted style is only marked deleted, for the same reason.

Applying a style (``apply_style``, called by ``services.check_job``):

* the prompt becomes ``prefix, prompt, suffix`` — the non-empty parts joined with ", " (the comma keeps
  each part a separate phrase for the text encoder, as prompt writers do by hand);
* the negative prompt is the style's and the job's, joined the same way;
* the model and the LoRAs are the style's unless the job names its own;
* the style's ControlNet units are the job's when it names none (``controlnets`` left out), in the modes that
  take ControlNets; a unit without an image of its own steers from the job's start image;
* a **locked** field cannot be changed: a job that sends a different value is refused (400) with a
  sentence naming the field. For a locked negative prompt, the job may send none (or the style's own); for
  locked ControlNets, the style's units with their settings (the control image the job's own where the style
  gives none);
* the reference images are the style's (kind reference, weight 1, the default fidelity; the first
  ``MAX_JOB_REFERENCES``) when the job chooses none, in the modes that take references; a locked set
  cannot be changed (sending the style's own is no change).
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from gallery.models import Asset
from studio import audit
from studio.errors import Conflict, InvalidInput, NotAllowed
from studio.models import Project

from . import library
from . import references as job_references
from .engine import registry
from .models import STYLE_FIELDS, Style, StyleVersion
from .permissions import can_manage_styles, styles_visible_to
from .schemas import ControlNetDefaultIn, ControlNetRef, LoraRef, StyleIn, StylePatch

JOIN = ", "
CONTENT = (
    "prompt_prefix",
    "prompt_suffix",
    "negative_prompt",
    "model",
    "loras",
    "references",
    "controlnet_defaults",
    "locks",
)
FIELD_WORDS = {
    "prompt_prefix": "the prompt prefix",
    "prompt_suffix": "the prompt suffix",
    "negative_prompt": "the negative prompt",
    "model": "the model",
    "loras": "the LoRAs",
    "references": "the reference images",
    "controlnets": "the ControlNets",
}
NAME_TAKEN = "The project already has a style of that name."
LEADS_ONLY = "Only the project's leads and admins may change its styles."


def join(*parts: str) -> str:
    return JOIN.join(p.strip() for p in parts if p and p.strip())


# --- reading --


def style_to_dict(style: Style, version: StyleVersion | None = None) -> dict[str, Any]:
    """The API's ``StyleOut``: the style with its current version (or ``version``)."""
    v = version or style.current()
    return {
        "id": style.id,
        "project": style.project.slug,
        "name": style.name,
        "version": v.number,
        "prompt_prefix": v.prompt_prefix,
        "prompt_suffix": v.prompt_suffix,
        "negative_prompt": v.negative_prompt,
        "model": v.model or None,
        "loras": [{"id": lo["id"], "weight": lo["weight"]} for lo in v.loras],
        "references": list(v.references),
        "controlnet_defaults": list(v.controlnet_defaults),
        "locks": [f for f in STYLE_FIELDS if f in v.locks],
        "created_by": style.created_by.username if style.created_by else None,
        "created_at": style.created_at,
        "updated_by": v.created_by.username if v.created_by else None,
        "updated_at": v.created_at,
    }


def project_styles(project: Project) -> list[tuple[Style, StyleVersion]]:
    """The project's live styles by name, each with its current version (two queries)."""
    styles = list(project.styles.filter(deleted=False).select_related("project", "created_by"))
    latest: dict[int, StyleVersion] = {}
    for v in StyleVersion.objects.filter(style__in=styles).select_related("created_by").order_by("number"):
        latest[v.style_id] = v
    return [(s, latest[s.id]) for s in styles if s.id in latest]


# --- checking a style's content --


def _check_content(project: Project, values: dict[str, Any]) -> dict[str, Any]:
    """The version's fields as stored, or InvalidInput naming each bad one: an installed model, installed
    LoRAs (of the model's family when it names one), reference images of the project, and locks that have
    something to lock."""
    errors: dict[str, list[str]] = {}
    model = None
    if values.get("model"):
        model = registry.get_model(values["model"])
        if model is None:
            errors["model"] = ["No such model."]
    loras: list[dict[str, Any]] = []
    chosen = [
        lo if isinstance(lo, LoraRef) else LoraRef.model_validate(lo) for lo in values.get("loras") or []
    ]
    if chosen and model is not None:
        loras = [{"id": u["id"], "weight": u["weight"]} for u in library.check_loras(chosen, model, errors)]
    elif chosen:
        problems = []
        for item in chosen:
            if registry.get_lora(item.id) is None:
                problems.append(f"No such LoRA: {item.id!r}.")
            elif any(lo["id"] == item.id for lo in loras):
                problems.append(f"{item.id} is chosen twice.")
            else:
                loras.append({"id": item.id, "weight": float(item.weight)})
        if problems:
            errors["loras"] = problems
    references = [str(r) for r in values.get("references") or []]
    if references:
        found = {
            str(i)
            for i in Asset.objects.filter(project=project, id__in=references).values_list("id", flat=True)
        }
        missing = [r for r in references if r not in found]
        if missing:
            errors["references"] = [f"No such image in this project: {r}." for r in missing]
        elif len(set(references)) != len(references):
            errors["references"] = ["An image is chosen twice."]
    controlnets = _check_controlnet_defaults(project, model, values.get("controlnet_defaults") or [], errors)
    # A locked field left empty stays empty for artists (a locked empty model: the studio's default).
    locks = list(dict.fromkeys(values.get("locks") or []))
    if errors:
        raise InvalidInput("Some fields are invalid: " + ", ".join(sorted(errors)) + ".", errors)
    return {
        "prompt_prefix": values.get("prompt_prefix") or "",
        "prompt_suffix": values.get("prompt_suffix") or "",
        "negative_prompt": values.get("negative_prompt") or "",
        "model": values.get("model") or "",
        "loras": loras,
        "references": references,
        "controlnet_defaults": controlnets,
        "locks": [f for f in STYLE_FIELDS if f in locks],
    }


def _check_controlnet_defaults(
    project: Project, model: Any, units: list[Any], errors: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """A style's ControlNet units as stored: installed ControlNets (fitting the style's model when it names
    one), starting before they end, their images images of the project."""
    from studio.boundary import validate

    stored: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, raw in enumerate(units, start=1):
        where = f"Unit {number}: " if len(units) > 1 else ""
        try:
            unit = raw if isinstance(raw, ControlNetDefaultIn) else validate(ControlNetDefaultIn, dict(raw))
        except InvalidInput as exc:
            problems.append(where + exc.message)
            continue
        controlnet = registry.get_controlnet(unit.id)
        misfit = registry.controlnet_misfit(controlnet, model) if controlnet and model else None
        if controlnet is None:
            problems.append(f"{where}no such ControlNet: {unit.id!r}.")
        elif misfit:
            problems.append(where + misfit)
        elif unit.guidance_start >= unit.guidance_end:
            problems.append(f"{where}guidance_start must be below guidance_end.")
        elif unit.image is not None and not Asset.objects.filter(project=project, id=unit.image).exists():
            problems.append(f"{where}no such image in this project: {unit.image}.")
        else:
            stored.append({**unit.model_dump(mode="json"), "id": controlnet.id})
    if problems:
        errors["controlnet_defaults"] = problems
    return stored


def _check_lead(user: Any, project: Project) -> None:
    if not can_manage_styles(user, project):
        raise NotAllowed(LEADS_ONLY)


def _name_free(project: Project, name: str, *, but: Style | None = None) -> None:
    taken = project.styles.filter(deleted=False, name__iexact=name)
    if but is not None:
        taken = taken.exclude(pk=but.pk)
    if taken.exists():
        raise Conflict(NAME_TAKEN, {"name": [NAME_TAKEN]})


def _version_fields(version: StyleVersion) -> dict[str, Any]:
    return {name: getattr(version, name) for name in CONTENT}


# --- writes --


def do_create_style(user: Any, project: Project, payload: StyleIn, *, ip: str | None = None) -> Style:
    """A new style with its version 1 (leads and admins). 400 for a taken name or bad content."""
    _check_lead(user, project)
    content = _check_content(project, payload.model_dump())
    return _create(user, project, payload.name, content, ip=ip, action=audit.STYLE_CREATE)


def _create(
    user: Any, project: Project, name: str, content: dict[str, Any], *, ip: str | None, action: str
) -> Style:
    _name_free(project, name)
    try:
        with transaction.atomic():
            style = Style.objects.create(project=project, name=name, created_by=user)
            StyleVersion.objects.create(style=style, number=1, created_by=user, **content)
    except IntegrityError as exc:  # the same name, created at the same moment
        raise Conflict(NAME_TAKEN, {"name": [NAME_TAKEN]}) from exc
    audit.record(
        user, action, target=f"style:{style.id}", project=project, ip=ip, details={"name": name, "version": 1}
    )
    return style


def do_edit_style(user: Any, style: Style, payload: StylePatch, *, ip: str | None = None) -> StyleVersion:
    """Write the given fields over the current version as a new version (a rename alone changes the name
    and makes no version). Older jobs and assets keep naming the version they used."""
    _check_lead(user, style.project)
    given = payload.model_fields_set
    with transaction.atomic():
        style = Style.objects.select_for_update().get(pk=style.pk)
        current = style.current()
        if "name" in given and payload.name and payload.name != style.name:
            _name_free(style.project, payload.name, but=style)
            style.name = payload.name
            try:
                with transaction.atomic():
                    style.save(update_fields=["name"])
            except IntegrityError as exc:
                raise Conflict(NAME_TAKEN, {"name": [NAME_TAKEN]}) from exc
        changed = {name: getattr(payload, name) for name in CONTENT if name in given}
        version = current
        if changed:
            merged = {**_version_fields(current), **changed}
            content = _check_content(style.project, merged)
            if content != _version_fields(current):
                number = (style.versions.aggregate(n=Max("number"))["n"] or 0) + 1
                version = StyleVersion.objects.create(style=style, number=number, created_by=user, **content)
        audit.record(
            user,
            audit.STYLE_EDIT,
            target=f"style:{style.id}",
            project=style.project,
            ip=ip,
            details={"name": style.name, "version": version.number},
        )
    return version


def do_delete_style(user: Any, style: Style, *, ip: str | None = None) -> None:
    """Take the style off the project's list. Its versions stay, so the images made with it still say
    which style and version they used; the name is free again."""
    _check_lead(user, style.project)
    Style.objects.filter(pk=style.pk).update(deleted=True)
    audit.record(
        user,
        audit.STYLE_DELETE,
        target=f"style:{style.id}",
        project=style.project,
        ip=ip,
        details={"name": style.name},
    )


def do_copy_style(
    user: Any, style: Style, target: Project, *, name: str | None = None, ip: str | None = None
) -> Style:
    """A new style in ``target`` with the current version's content (as its version 1), for a lead of both
    projects. Reference images belong to the source project, so they stay behind (and ControlNet units then
    steer from the job's start image)."""
    _check_lead(user, style.project)
    if not can_manage_styles(user, target):
        raise NotAllowed("Only a lead of both projects may copy a style between them.")
    current = _version_fields(style.current())
    controlnets = [{**unit, "image": None} for unit in current["controlnet_defaults"] if unit.get("id")]
    content = {**current, "references": [], "controlnet_defaults": controlnets}
    content = _check_content(target, content)
    copy = _create(user, target, name or style.name, content, ip=ip, action=audit.STYLE_COPY)
    return copy


# --- a style on a job --


def style_for_job(style_id: int, user: Any, project: Project | None) -> tuple[Style, StyleVersion]:
    """The style a job names: a live style of the job's project, else InvalidInput."""
    style = None
    if project is not None:
        style = styles_visible_to(user).filter(project=project, id=style_id).select_related("project").first()
    if style is None:
        raise InvalidInput("No such style in this project.", {"style": ["No such style in this project."]})
    return style, style.current()


def _locked(style: Style, field: str) -> InvalidInput:
    sentence = f"The style '{style.name}' locks {FIELD_WORDS[field]}; leave it out or choose another style."
    return InvalidInput(sentence, {field: [sentence]})


def _lora_key(loras: list[Any]) -> list[tuple[str, float]]:
    pairs = [(lo["id"], lo["weight"]) if isinstance(lo, dict) else (lo.id, lo.weight) for lo in loras]
    return sorted((i, round(float(w), 4)) for i, w in pairs)


def _reference_key(references: list[Any]) -> list[tuple[str, str, float, float]]:
    return [(str(r.image), r.kind, round(r.weight, 4), round(r.fidelity, 4)) for r in references]


def _controlnet_key(units: list[Any], own_images: bool) -> list[tuple[Any, ...]]:
    """What a lock on the ControlNets compares: each unit's ControlNet and settings, and its image where the
    style gives one (``own_images``: the images are the job's, not compared)."""
    key = []
    for u in units:
        if isinstance(u, ControlNetRef):
            values = (u.id, u.preprocessor, u.weight, u.start, u.end, str(u.image))
        else:
            values = (u["id"], u["control"], u["weight"], u["guidance_start"], u["guidance_end"], u["image"])
        rounded = (values[0], values[1], *(round(float(v), 4) for v in values[2:5]))
        key.append(rounded if own_images else (*rounded, values[5] and str(values[5])))
    return key


def _style_controlnets(style: Style, v: StyleVersion, request: Any) -> list[ControlNetRef]:
    """The style's ControlNet units for a job that names none: each with its own image, else the job's start
    image; InvalidInput when a unit has neither."""
    units = [u for u in v.controlnet_defaults if u.get("id")]  # (units written before ControlNet: not used)
    start = getattr(request, "init_asset", None)
    if any(not u.get("image") for u in units) and start is None:
        sentence = (
            f"The style '{style.name}' steers with a ControlNet from the start image: choose a mode that "
            "starts from an image, or give the control images (controlnets)."
        )
        raise InvalidInput(sentence, {"controlnets": [sentence]})
    return [
        ControlNetRef.model_validate(
            {
                "id": u["id"],
                "image": u.get("image") or start,
                "preprocessor": u["control"],
                "weight": u["weight"],
                "start": u["guidance_start"],
                "end": u["guidance_end"],
            }
        )
        for u in units
    ]


def apply_style(request: Any, user: Any, project: Project | None) -> tuple[Any, dict[str, Any] | None]:
    """The job request with the style applied, and what the job records of it (``{"id", "name",
    "version"}``), or the request unchanged and None when it names no style. InvalidInput when the style
    does not exist or the request changes a field it locks."""
    prefix, suffix = request.prompt_prefix, request.prompt_suffix
    if request.style is None:
        if prefix is None and suffix is None:
            return request, None
        prompt = join(prefix or "", request.prompt or "", suffix or "") if request.prompt else request.prompt
        return request.model_copy(update={"prompt": prompt}), None
    style, v = style_for_job(request.style, user, project)
    locks = set(v.locks)
    given = request.model_fields_set
    if "prompt_prefix" in locks and prefix is not None and prefix != v.prompt_prefix:
        raise _locked(style, "prompt_prefix")
    if "prompt_suffix" in locks and suffix is not None and suffix != v.prompt_suffix:
        raise _locked(style, "prompt_suffix")
    negative = request.negative_prompt or ""
    if "negative_prompt" in locks and negative and negative != v.negative_prompt:
        raise _locked(style, "negative_prompt")
    if "model" in locks and request.model and request.model != v.model:
        raise _locked(style, "model")
    if "loras" in locks and "loras" in given and _lora_key(request.loras or []) != _lora_key(v.loras):
        raise _locked(style, "loras")
    takes_references = "references" in type(request).model_fields
    style_refs = job_references.style_references(v.references)
    if (
        takes_references
        and "references" in locks
        and "references" in given
        and _reference_key(request.references or []) != _reference_key(style_refs)
    ):
        raise _locked(style, "references")
    takes_controlnets = "controlnets" in type(request).model_fields
    own = getattr(request, "controlnets", None)
    if "controlnets" in locks and takes_controlnets and own is not None:
        style_units = [u for u in v.controlnet_defaults if u.get("id")]
        given_images = all(u.get("image") for u in style_units)
        if _controlnet_key(own, not given_images) != _controlnet_key(style_units, not given_images):
            raise _locked(style, "controlnets")
    update: dict[str, Any] = {}
    if request.prompt:
        update["prompt"] = join(
            v.prompt_prefix if prefix is None else prefix,
            request.prompt,
            v.prompt_suffix if suffix is None else suffix,
        )
    if negative != v.negative_prompt:
        update["negative_prompt"] = join(v.negative_prompt, negative)
    else:
        update["negative_prompt"] = v.negative_prompt
    if not request.model and v.model:
        update["model"] = v.model
    if "loras" not in given or request.loras is None:
        if v.loras:
            update["loras"] = [LoraRef.model_validate(lo) for lo in v.loras]
    if takes_references and style_refs and ("references" not in given or request.references is None):
        update["references"] = style_refs
    if takes_controlnets and own is None and any(u.get("id") for u in v.controlnet_defaults):
        update["controlnets"] = _style_controlnets(style, v, request)
    return request.model_copy(update=update), {"id": style.id, "name": style.name, "version": v.number}
