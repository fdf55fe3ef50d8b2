"""Manage → Models: the admin's model library page (installed models, LoRAs, ControlNets, IP-Adapters,
preview decoders and annotators, and installing one from a path on the server). The writes are
``generation.library``'s."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from studio.audit import client_ip
from studio.errors import InvalidInput, ServiceError
from studio.manage_views import admin_only

from . import library
from .engine import registry
from .engine.families import FAMILIES
from .permissions import can_manage_library

INSTALL_KINDS = {
    "model": "Model",
    "lora": "LoRA",
    "controlnet": "ControlNet",
    "preview": "Preview decoder",
    "ip_adapter": "IP-Adapter",
    "annotator": "Annotator",
}

CHOOSE_KIND = "Choose a model, a LoRA, a ControlNet, an IP-Adapter, a preview decoder or an annotator."


@login_required
@admin_only
@require_http_methods(["GET", "POST"])
def models_page(request: HttpRequest) -> HttpResponse:
    """Installed models, LoRAs, ControlNets, IP-Adapters, preview decoders and annotators; POST installs one
    from a path on the server (``generation.library``)."""
    errors: dict[str, list[str]] = {}
    error = None
    form = {"kind": "model", "path": "", "name": "", "family": ""}
    if request.method == "POST":
        if not can_manage_library(request.user):
            raise Http404
        form = {key: request.POST.get(key, "").strip() for key in form}
        try:
            if form["kind"] == "lora":
                done = library.do_install_lora(
                    request.user,
                    form["path"],
                    name=form["name"],
                    family=form["family"],
                    ip=client_ip(request),
                )
            elif form["kind"] == "controlnet":
                done = library.do_install_controlnet(
                    request.user,
                    form["path"],
                    name=form["name"],
                    family=form["family"],
                    ip=client_ip(request),
                )
            elif form["kind"] == "preview":
                done = library.do_install_preview_decoder(
                    request.user, form["path"], form["family"], name=form["name"], ip=client_ip(request)
                )
            elif form["kind"] == "annotator":
                done = library.do_install_annotator(
                    request.user, form["path"], name=form["name"], ip=client_ip(request)
                )
            elif form["kind"] == "ip_adapter":
                done = library.do_install_ip_adapter(
                    request.user,
                    form["path"],
                    name=form["name"],
                    family=form["family"],
                    ip=client_ip(request),
                )
            elif form["kind"] == "model":
                done = library.do_install_model(
                    request.user, form["path"], name=form["name"], ip=client_ip(request)
                )
            else:
                raise InvalidInput(
                    "Choose what to install.",
                    {"kind": [CHOOSE_KIND]},
                )
        except ServiceError as exc:
            error, errors = exc.message, exc.errors
        else:
            if form["kind"] == "annotator":
                label = registry.ANNOTATOR_KINDS[done.family].lower()
            else:
                label = FAMILIES[done.family].label
            messages.success(request, f"{INSTALL_KINDS[form['kind']]} “{done.name}” ({label}) installed.")
            return redirect("manage-models")
    models_dir = registry.registry().models_dir
    models = registry.list_models()
    context = {
        "section": "models",
        "models": [
            {"info": m, "family": FAMILIES[m.family].label, "removable": m.path.parent == models_dir}
            for m in models
        ],
        "loras": [{"info": lora, "family": FAMILIES[lora.family].label} for lora in registry.list_loras()],
        "ip_adapters": [
            {"info": adapter, "family": FAMILIES[adapter.family].label}
            for adapter in registry.list_ip_adapters()
        ],
        "controlnets": [
            {
                "info": controlnet,
                "family": FAMILIES[controlnet.family].label,
                "fits": [m.name for m in models if registry.controlnet_misfit(controlnet, m) is None],
            }
            for controlnet in registry.list_controlnets()
        ],
        "previews": [
            {"info": decoder, "family": FAMILIES[decoder.family].label}
            for decoder in registry.list_preview_decoders()
        ],
        "annotators": [
            {"info": annotator, "kind": registry.ANNOTATOR_KINDS[annotator.kind]}
            for annotator in registry.list_annotators()
        ],
        "families": [(f.key, f.label) for f in FAMILIES.values()],
        "form": form,
        "error": error,
        "errors": errors,
    }
    return render(request, "manage/models.html", context, status=400 if error else 200)


@login_required
@admin_only
@require_http_methods(["POST"])
def model_remove(request: HttpRequest, kind: str, item_id: str) -> HttpResponse:
    if kind not in INSTALL_KINDS or not can_manage_library(request.user):
        raise Http404
    try:
        library.do_remove(request.user, kind, item_id, ip=client_ip(request))
    except ServiceError as exc:
        if exc.status == 404:
            raise Http404 from None
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{INSTALL_KINDS[kind]} “{item_id}” removed.")
    return redirect("manage-models")
