"""Settings of the browser tests: the demo project as is, with a faster demo model, no
limit on creating conversations (a test makes dozens to page through) or on replies started
a minute: every test's browser is at 127.0.0.1, and one module starts more than 30; and
Arabic among the languages, for the page right to left."""

import os

from project.settings import *  # noqa: F403

DEBUG = True  # runserver (daphne) serves the page's static files
# A migrated SQLite file of the server's own (DemoServer): the chat stores conversations.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJANGO_DB"]}}
# About 230 tokens a reply, 4 ms apart: a reply takes about a second.
STREAMING = {
    **STREAMING,  # noqa: F405
    "DEMO_TOKEN_DELAY": 0.004,
    "MAX_CONVERSATIONS_PER_MINUTE": None,
    "MAX_STARTS_PER_MINUTE": None,
}
# Arabic besides the demo's languages: the page right to left (its sentences stay English).
LANGUAGES = [*LANGUAGES, ("ar", "العربية")]  # noqa: F405
LOGGING = {"version": 1, "disable_existing_loggers": False}
