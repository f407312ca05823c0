"""Settings of the browser tests with a real project's choices the demo does not make
(``tests/browser/test_project_settings.py``), picked by ``$STREAMING_TEST_PROJECT``:

* ``atomic``: ``ATOMIC_REQUESTS`` on;
* ``csp``: a strict Content Security Policy (no ``unsafe-inline``, scripts by nonce):
  Django 6's ``ContentSecurityPolicyMiddleware``, or on Django 5.2 ``tests.browser.csp``'s,
  which keeps the nonce where Django 6's does.
"""

import os

from .settings import *  # noqa: F403
from .settings import DATABASES, MIDDLEWARE

PROJECT = os.environ.get("STREAMING_TEST_PROJECT", "")

if PROJECT == "atomic":
    DATABASES = {"default": {**DATABASES["default"], "ATOMIC_REQUESTS": True}}
elif PROJECT == "csp":
    try:
        from django.utils.csp import CSP
    except ImportError:  # Django 5.2
        MIDDLEWARE = [*MIDDLEWARE, "tests.browser.csp.ContentSecurityPolicyMiddleware"]
    else:
        MIDDLEWARE = [*MIDDLEWARE, "django.middleware.csp.ContentSecurityPolicyMiddleware"]
        SECURE_CSP = {
            "default-src": [CSP.SELF],
            "script-src": [CSP.SELF, CSP.NONCE],
            "style-src": [CSP.SELF],
        }
