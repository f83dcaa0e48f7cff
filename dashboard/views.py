"""Pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.roles import visible_buildings


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The buildings this user may see."""
    return render(request, "dashboard/home.html", {"buildings": visible_buildings(request.user)})
