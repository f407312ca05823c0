"""Django 6's ``ContentSecurityPolicyMiddleware`` for Django 5.2, with a fixed strict
policy: a nonce for each request, kept where Django 6's keeps it (``request._csp_nonce``),
and the policy header, its scripts allowed by that nonce."""

from __future__ import annotations

import secrets

from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

POLICY = "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'"


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    def process_request(self, request: HttpRequest) -> None:
        request._csp_nonce = secrets.token_urlsafe(16)  # type: ignore[attr-defined]

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        nonce = getattr(request, "_csp_nonce", "")
        response.headers.setdefault("Content-Security-Policy", POLICY.format(nonce=nonce))
        return response
