"""Settings of the demo project: the app's chat page, served by daphne (ASGI), with the
project's own look (``templates/streaming/chat.html``, ``static/``) and the admin."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "streaming",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # the page in the browser's language
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB", BASE_DIR / "db.sqlite3"),
        # Concurrent requests write conversations: a transaction takes the write lock when
        # it starts (waiting for it), instead of failing with "database is locked" later.
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]  # what the project adds to the app's files
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
# The languages the chat page is translated into (the app ships French); the browser's
# Accept-Language picks one, else LANGUAGE_CODE (English).
LANGUAGES = [("en", "English"), ("fr", "Français")]
TIME_ZONE = "UTC"  # the log's times (Django's default is America/Chicago)

# Every key is optional; these are the defaults (see streaming/conf.py and the README).
STREAMING = {
    "KEEPALIVE": 15.0,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # Not propagated: daphne gives the root logger a handler too, which printed each twice.
    "loggers": {"streaming": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
