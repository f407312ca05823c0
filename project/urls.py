"""URLs of the demo project: the chat page and the ready-made chat endpoints."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("demo/clock", views.clock, name="clock"),
    path("", include("streaming.urls")),
]
