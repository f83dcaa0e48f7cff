from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path

from dashboard.accounts import ThrottledLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Logging in and out only: not django.contrib.auth.urls, whose password-reset pages would
    # promise an e-mail no backend sends (accounts are made and reset by an administrator).
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("", include("dashboard.urls")),
]
