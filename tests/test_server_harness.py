"""The harness that starts the test servers (``tests/servers.run_server``): a server that
logs much still serves, its log going nowhere it could block."""

from __future__ import annotations

import socket
import sys

from .servers import free_port, run_server

#: A server that writes 1 MiB to its stderr (more than a pipe holds), then listens.
CHATTY_SERVER = """
import socket, sys
sys.stderr.write("x" * (1 << 20))
sys.stderr.flush()
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    server.accept()[0].close()
"""


def test_a_server_that_logs_more_than_a_pipe_holds_still_starts() -> None:
    port = free_port()
    with (
        run_server([sys.executable, "-c", CHATTY_SERVER, str(port)], port),
        socket.create_connection(("127.0.0.1", port), timeout=5),
    ):
        pass
