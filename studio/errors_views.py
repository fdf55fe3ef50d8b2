"""404 and 500 pages: JSON under /api/, HTML elsewhere."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .boundary import error_response


def not_found(request: HttpRequest, exception: Any = None) -> HttpResponse:
    if request.path.startswith(("/api/", "/sdapi/")):
        return error_response(404, "Not found.")
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(("/api/", "/sdapi/")):
        return error_response(500, "Something went wrong on the studio's side; it has been logged.")
    return render(request, "500.html", status=500)
