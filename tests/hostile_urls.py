"""Routes of ``tests.settings_hostile``: the demo's, plus the hostile test views."""

from django.urls import path

from project.urls import urlpatterns as demo_urlpatterns

from . import hostile_views, routes

urlpatterns = [
    *demo_urlpatterns,
    path("visitor", routes.visitor),
    path("probe/<str:key>", routes.probe),
    path("h/connections", hostile_views.open_connections),
    path("h/login", hostile_views.login_view),
    path("h/logout", hostile_views.logout_view),
    path("h/plain", hostile_views.plain),
    path("h/openai", hostile_views.OpenAIPlainView.as_view()),
    path("h/slow", hostile_views.SlowView.as_view()),
    path("h/login-slow", hostile_views.LoginSlowView.as_view()),
]
