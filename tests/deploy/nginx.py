"""Debian's nginx for the tests, running the shipped ``deploy/nginx.conf``.

The shipped file is read and only its ports and paths are substituted (every substituted
text must be in it, so the tests follow the file as it changes). It is included in an
``http {}`` like Debian's default ``/etc/nginx/nginx.conf``, with everything nginx writes
(pid, logs, temporary files) in a temporary directory, ``daemon off;`` and one worker, so
any user can run it and requests go round robin over the upstream servers in turn. The
test wrapper adds one header, ``X-Upstream`` (the daphne that answered), for the tests.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ..servers import ROOT, wait_for_port

SHIPPED = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")

MAIN = """\
{user}
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1.2 TLSv1.3;
    gzip on;
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    add_header X-Upstream $upstream_addr always;

    include {dir}/streaming.conf;
}}
"""


def render(replacements: Mapping[str, str]) -> str:
    """The shipped config with each ``old`` text replaced by ``new`` (all must be there)."""
    text = SHIPPED.read_text()
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{old!r} is no longer in deploy/nginx.conf")
        text = text.replace(old, new)
    return text


@contextmanager
def nginx(directory: Path, config: str, port: int) -> Iterator[Path]:
    """Run nginx with ``config`` (the server part) until the block ends; yield its directory.

    ``port`` is one it listens on (waited for). It is stopped with SIGTERM (nginx's fast
    shutdown, which closes open streams at once), and killed if it is not gone in 10 s.
    """
    if NGINX is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    directory.mkdir(parents=True, exist_ok=True)
    user = ""
    if os.geteuid() == 0:  # root's workers would run as "nobody", who cannot read tmp_path
        user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
    (directory / "streaming.conf").write_text(config)
    main = directory / "nginx.conf"
    main.write_text(MAIN.format(user=user, dir=directory))
    error_log = directory / "error.log"
    command = [NGINX, "-p", str(directory), "-c", str(main), "-e", str(error_log)]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        try:
            wait_for_port(port, process, timeout=10)
        except (RuntimeError, TimeoutError) as error:
            log = error_log.read_text(errors="replace")[-3000:] if error_log.exists() else ""
            raise RuntimeError(f"nginx did not start: {error}\n{log}") from error
        yield directory
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the master and its worker
            process.wait(timeout=5)
