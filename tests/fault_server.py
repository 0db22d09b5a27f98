"""A loopback HTTP server that serves good images and every fault the downloader must survive."""

import collections
import contextlib
import http.server
import threading
import time
import urllib.parse
from typing import Dict, Iterator

from cli.demo_data import LoopbackServer
from tests.helpers import bomb_png, jpeg_bytes, png_rgba_bytes


GOOD_SIZE = (400, 300)  # bigger than the tests' max_size, so resizing is exercised
STALL_S = 3.0
SLOW_S = 0.5
HOLD_MAX_S = 300.0  # a held request is answered at the latest after this, should a test never release it
HUGE_BYTES = 3 * 1024 * 1024
FAKE_BODY = b"<html><body>internal admin console, secret token 1234</body></html>"


class FaultServer:
    """Routes:

    /good/<name>.jpg   200 JPEG 400x300            /png/<name>.png   200 RGBA PNG
    /slow/<name>.jpg   200 JPEG after SLOW_S
    /held/<name>.jpg   200 JPEG; after hold_after(n), the (n+1)th and later wait for release()
    /missing           404                          /gone             410
    /flaky/<name>      500 on the first hit, then 200 JPEG
    /busy              429 always (Retry-After: 0)
    /stall[...]        sleeps STALL_S before answering
    /truncated.jpg     a JPEG cut in half           /page.html        HTML with an <img>
    /bomb.png          a PNG header claiming 4000x4000 pixels
    /loop-a, /loop-b   redirect to each other       /to-file          redirect to file:///etc/passwd
    /to-good/<name>    302 to /good/<name>          /huge, /huge-stream  3 MB, with / without Content-Length
    /noai.jpg          200 JPEG with X-Robots-Tag: noai
    /two-robots.jpg    200 JPEG with two X-Robots-Tag headers: noindex, then noai
    /fake.jpg          200 "image/jpeg" whose body is an HTML page with a secret in it
    /redirect?to=URL   302 to URL (percent-encoded)
    /untyped/<name>.jpg  200 JPEG with no Content-Type header
    /untyped-page        200 HTML page with no Content-Type header
    """

    def __init__(self):
        self.hits: Dict[str, int] = collections.Counter()
        self._lock = threading.Lock()
        self.good = jpeg_bytes(*GOOD_SIZE)
        self.png = png_rgba_bytes(120, 90)
        self.bomb = bomb_png(4000)
        self._serve_before_holding = None
        self._held_requests = 0
        self.holding = threading.Event()  # set when a /held/ request starts waiting for release()
        self._released = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                """Silences per-request logs."""

            def _send(self, code, body=b"", content_type="image/jpeg", headers=None, length=True):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                for k, v in headers.items() if isinstance(headers, dict) else headers or ():
                    self.send_header(k, v)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path
                with server._lock:
                    server.hits[path] += 1
                    hit = server.hits[path]
                if path.startswith("/good/"):
                    self._send(200, server.good)
                elif path.startswith("/slow/"):
                    time.sleep(SLOW_S)
                    self._send(200, server.good)
                elif path.startswith("/held/"):
                    if server._must_hold():
                        server.holding.set()
                        server._released.wait(HOLD_MAX_S)
                    self._send(200, server.good)
                elif path.startswith("/png/"):
                    self._send(200, server.png, "image/png")
                elif path == "/missing":
                    self._send(404, b"not found", "text/plain")
                elif path == "/gone":
                    self._send(410, b"gone", "text/plain")
                elif path.startswith("/flaky/"):
                    self._send(500, b"oops", "text/plain") if hit == 1 else self._send(200, server.good)
                elif path == "/busy":
                    self._send(429, b"slow down", "text/plain", {"Retry-After": "0"})
                elif path.startswith("/stall"):
                    time.sleep(STALL_S)
                    self._send(200, server.good)
                elif path == "/truncated.jpg":
                    self._send(200, server.good[: len(server.good) // 2])
                elif path == "/page.html":
                    self._send(200, b'<html><body><img src="/good/x.jpg"></body></html>', "text/html; charset=utf-8")
                elif path == "/bomb.png":
                    self._send(200, server.bomb, "image/png")
                elif path in ("/loop-a", "/loop-b"):
                    self._send(302, headers={"Location": "/loop-b" if path == "/loop-a" else "/loop-a"})
                elif path == "/to-file":
                    self._send(302, headers={"Location": "file:///etc/passwd"})
                elif path.startswith("/to-good/"):
                    self._send(302, headers={"Location": "/good/" + path.rsplit("/", 1)[-1]})
                elif path == "/huge":
                    self._send(200, b"\xff\xd8\xff" + b"\0" * HUGE_BYTES)
                elif path == "/huge-stream":
                    self._send(200, b"\xff\xd8\xff" + b"\0" * HUGE_BYTES, length=False)
                elif path == "/two-robots.jpg":
                    self._send(200, server.good, headers=[("X-Robots-Tag", "noindex"), ("X-Robots-Tag", "noai")])
                elif path == "/fake.jpg":
                    self._send(200, FAKE_BODY)
                elif path.startswith("/redirect?to="):
                    self._send(302, headers={"Location": urllib.parse.unquote(path.split("=", 1)[1])})
                elif path == "/noai.jpg":
                    self._send(200, server.good, headers={"X-Robots-Tag": "noai, noimageai"})
                elif path.startswith("/untyped/") or path == "/untyped-page":
                    body = server.good if path.startswith("/untyped/") else b"<html><body>hello</body></html>"
                    self.send_response(200)  # and no Content-Type: the body alone must decide
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._send(404, b"no such route", "text/plain")

        self._httpd = LoopbackServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def hold_after(self, n: int) -> None:
        """Serves the first ``n`` requests of /held/ URLs; holds the later ones until ``release()``."""
        self._serve_before_holding = n

    def release(self) -> None:
        """Lets every held request, and every later one, through."""
        self._released.set()

    def _must_hold(self) -> bool:
        with self._lock:
            self._held_requests += 1
            return self._serve_before_holding is not None and self._held_requests > self._serve_before_holding

    def url(self, path: str) -> str:
        return self.base + path

    def redirect_to(self, target: str) -> str:
        """A URL on this server that redirects to ``target``."""
        return self.url("/redirect?to=" + urllib.parse.quote(target, safe=""))

    def good_hits(self) -> int:
        return sum(v for k, v in self.hits.items() if k.startswith("/good/"))

    @contextlib.contextmanager
    def running(self) -> Iterator["FaultServer"]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release()
            self._httpd.shutdown()
            self._httpd.server_close()
