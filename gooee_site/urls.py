from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from dashboard.accounts import ThrottledLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before django.contrib.auth.urls, whose plain login view it replaces.
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("dashboard.urls")),
]
