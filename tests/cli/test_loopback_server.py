"""The loopback server of the demo and the tests: a client hanging up prints nothing, any other error its traceback."""

import http.server
import socket
import threading

import pytest

from cli.demo_data import LoopbackServer


class _Failing(http.server.BaseHTTPRequestHandler):
    error: BaseException = ConnectionResetError(104, "Connection reset by peer")

    def handle(self):
        raise self.error


class _Server(LoopbackServer):
    def __init__(self, *args):
        super().__init__(*args)
        self.handled = threading.Event()

    def handle_error(self, request, client_address):
        try:
            super().handle_error(request, client_address)
        finally:
            self.handled.set()


@pytest.mark.parametrize(
    "error, printed",
    [
        (ConnectionResetError(104, "Connection reset by peer"), False),
        (BrokenPipeError(32, "Broken pipe"), False),
        (ValueError("a bug in the handler"), True),
    ],
)
def test_only_a_client_hanging_up_is_kept_off_the_console(capsys, error, printed):
    handler = type("Handler", (_Failing,), {"error": error})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(server.server_address, timeout=5):
            assert server.handled.wait(5)
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert ("Traceback" in err and type(error).__name__ in err) == printed, err
