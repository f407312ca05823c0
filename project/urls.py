"""URLs of the demo project: the app's chat (page, streams, conversations), the admin
(stored conversations) and a small ``sse_response`` example."""

from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("demo/clock", views.clock, name="clock"),
    path("", include("streaming.urls")),
]
