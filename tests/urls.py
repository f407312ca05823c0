"""The demo project's URLs plus the routes the tests drive."""

from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.vary import vary_on_cookie

from project.urls import urlpatterns as demo_urlpatterns

from . import chat_ui_views, routes, transport_views

urlpatterns = [
    *demo_urlpatterns,
    path("visitor", routes.visitor, name="visitor"),
    path("plugin/<str:name>", routes.plugin, name="plugin"),
    path("probe/<str:key>", routes.probe, name="probe"),
    path("upstream/<str:name>", routes.upstream, name="upstream"),
    path("sse/scripted", transport_views.ScriptedView.as_view()),
    path("sse/keep", transport_views.KeepView.as_view()),
    path("sse/exempt/class", transport_views.HeaderAuthView.as_view()),
    path("sse/exempt/dispatch", transport_views.ExemptDispatchView.as_view()),
    path("sse/exempt/url", csrf_exempt(transport_views.KeepView.as_view())),
    path("sse/exempt/not", vary_on_cookie(transport_views.KeepView.as_view())),
    path("sse/response-only", transport_views.ResponseOnlyView.as_view()),
    path("sse/login", transport_views.LoginScriptedView.as_view()),
    path("sse/denied", transport_views.DeniedView.as_view()),
    path("sse/custom", transport_views.CustomMessagesView.as_view()),
    path("sse/validation", transport_views.ValidationView.as_view()),
    path("sse/openai", transport_views.OpenAIView.as_view()),
    path("sse/openai-keep", transport_views.KeepOpenAIView.as_view()),
    path("sse/openai-late", transport_views.SlowToAnswerView.as_view()),
    path("sse/slow-to-read", transport_views.SlowToReadView.as_view()),
    path("sse/echo", transport_views.EchoView.as_view()),
    path("sse/api-key", transport_views.ApiKeyView.as_view()),
    path("sse/chat-ui", chat_ui_views.ScriptedChatUIView.as_view()),
    path("sse/chat-ui/<str:chat_id>/stream", chat_ui_views.ScriptedChatUIView.as_view()),
]
