"""The production set-up of the README's "Deploy", started from the shipped files.

A redis-server; ``migrate`` and ``collectstatic`` with ``deploy/settings_production.py``;
two daphne processes started with the ``ExecStart`` and ``Environment`` of
``deploy/streaming@.service``; nginx with ``deploy/nginx.conf`` in front of them, on TLS
with a certificate of a local test CA (``trustme``). Everything on 127.0.0.1, free ports,
a temporary directory; stopped for sure at the end.
"""

from __future__ import annotations

import os
import secrets
import shlex
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme

from ..redis_server import redis_server
from ..servers import ROOT, free_port, run_server
from .nginx import nginx, render

UNIT = ROOT / "deploy" / "streaming@.service"
SHIPPED_DAPHNE = "/srv/streaming/.venv/bin/daphne"
SHIPPED_STATIC_ROOT = "/srv/streaming/staticfiles/"
SHIPPED_CERTIFICATE = "/etc/letsencrypt/live/chat.example.com/fullchain.pem"
SHIPPED_KEY = "/etc/letsencrypt/live/chat.example.com/privkey.pem"


def unit_entries(name: str) -> list[str]:
    """The values of every ``name=`` line of the shipped systemd unit."""
    lines = UNIT.read_text().splitlines()
    return [line.split("=", 1)[1] for line in lines if line.startswith(f"{name}=")]


def unit_command(port: int) -> list[str]:
    """The unit's ``ExecStart`` for instance ``port``, with this venv's daphne."""
    (exec_start,) = unit_entries("ExecStart")
    words = shlex.split(exec_start.replace("%i", str(port)))
    assert words[0] == SHIPPED_DAPHNE, words
    return [sys.executable, "-m", "daphne", *words[1:]]


def unit_environment() -> dict[str, str]:
    """The unit's ``Environment=`` variables."""
    return dict(entry.split("=", 1) for entry in unit_entries("Environment"))


@dataclass
class Stack:
    url: str  #: https://127.0.0.1:<port>, nginx
    plain_url: str  #: http://127.0.0.1:<port>, nginx's redirect to HTTPS
    tls: ssl.SSLContext  #: trusts nginx's certificate
    ports: tuple[int, int]  #: the two daphne processes
    env: dict[str, str]  #: what the processes run with (the unit's and the env file's variables)
    directory: Path  #: the certificate and key, the database, STATIC_ROOT

    @property
    def upstreams(self) -> set[str]:
        """The daphne processes as nginx's ``$upstream_addr`` (``X-Upstream``) names them."""
        return {f"127.0.0.1:{port}" for port in self.ports}


def production_env(directory: Path, redis_url: str) -> dict[str, str]:
    """The unit's environment plus what /etc/streaming/env would say."""
    return {
        **unit_environment(),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "STREAMING_REDIS_URL": redis_url,
        "DJANGO_DB": str(directory / "db.sqlite3"),
        "DJANGO_STATIC_ROOT": str(directory / "staticfiles"),
        "OPENAI_API_KEY": "",  # the built-in demo model, whatever the machine has set
    }


def manage(env: dict[str, str], *args: str) -> None:
    """``manage.py <args>`` as the README's deploy steps run it."""
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=120,
    )


def nginx_config(
    upstream_ports: tuple[int, int],
    https_port: int,
    http_port: int,
    directory: Path,
    env: dict[str, str],
) -> str:
    """``deploy/nginx.conf`` with these ports, the test certificate and STATIC_ROOT."""
    return render(
        {
            "server 127.0.0.1:8001": f"server 127.0.0.1:{upstream_ports[0]}",
            "server 127.0.0.1:8002": f"server 127.0.0.1:{upstream_ports[1]}",
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
            SHIPPED_CERTIFICATE: str(directory / "fullchain.pem"),
            SHIPPED_KEY: str(directory / "privkey.pem"),
            SHIPPED_STATIC_ROOT: f"{env['DJANGO_STATIC_ROOT']}/",
        }
    )


@contextmanager
def production_stack(directory: Path) -> Iterator[Stack]:
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        env = production_env(directory, redis.url)
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")

        ports = free_port(), free_port()
        for port in ports:
            stack.enter_context(run_server(unit_command(port), port, env))

        ca = trustme.CA()
        certificate = ca.issue_cert("127.0.0.1")
        certificate.cert_chain_pems[0].write_to_path(str(directory / "fullchain.pem"))
        certificate.private_key_pem.write_to_path(str(directory / "privkey.pem"))
        tls = ssl.create_default_context()
        ca.configure_trust(tls)

        https_port, http_port = free_port(), free_port()
        config = nginx_config(ports, https_port, http_port, directory, env)
        stack.enter_context(nginx(directory / "nginx", config, https_port))
        yield Stack(
            url=f"https://127.0.0.1:{https_port}",
            plain_url=f"http://127.0.0.1:{http_port}",
            tls=tls,
            ports=ports,
            env=env,
            directory=directory,
        )
