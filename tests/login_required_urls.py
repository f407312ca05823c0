"""Routes of ``tests.settings_login_required``: the demo's behind a login, the test login
and logout, a login page, and a stream a project opened to anonymous users."""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.urls import path

from project.urls import urlpatterns as demo_urlpatterns

from . import hostile_views


@login_not_required
def login_page(request: HttpRequest) -> HttpResponse:
    """Where ``LoginRequiredMiddleware`` sends anonymous visitors: an HTML page."""
    return HttpResponse("<!doctype html><title>Log in</title><h1>Log in</h1>")


urlpatterns = [
    path("h/login", login_not_required(hostile_views.login_view)),
    path("h/logout", login_not_required(hostile_views.logout_view)),
    path("h/login-page", login_page),
    path("h/open", hostile_views.OpenSlowView.as_view()),
    *demo_urlpatterns,
]
