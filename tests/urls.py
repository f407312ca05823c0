"""The demo project's URLs plus the routes the tests drive."""

from django.urls import path

from project.urls import urlpatterns as demo_urlpatterns

from . import routes

urlpatterns = [
    *demo_urlpatterns,
    path("plugin/<str:name>", routes.plugin, name="plugin"),
    path("probe/<str:key>", routes.probe, name="probe"),
    path("upstream/<str:name>", routes.upstream, name="upstream"),
]
