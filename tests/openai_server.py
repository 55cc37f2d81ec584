"""A local OpenAI-compatible chat-completions server with scripted replies, for testing
the real ``openai`` client on 127.0.0.1 (nothing leaves the machine)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content: str | None = None, refusal: str | None = None, tokens=(900, 20)):
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "gpt-4.1-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": tokens[0],
            "completion_tokens": tokens[1],
            "total_tokens": sum(tokens),
        },
    }


def cells_reply(cells) -> dict:
    return completion(json.dumps({"key_regions": cells}))


class Server:
    """``reply(request_json, frame_id, attempt) -> (status, body, headers)``; ``attempt``
    counts the requests for that frame so far (1 = first). Every request is recorded
    with its headers."""

    def __init__(self, reply: Callable, delay: float = 0.0):
        self.reply, self.delay = reply, delay
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                frame = self.headers.get("X-Rsexp-Frame", "")
                with server.lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    server.requests.append(
                        {"path": self.path, "headers": headers, "json": body, "frame": frame}
                    )
                    attempt = sum(r["frame"] == frame for r in server.requests)
                if server.delay:
                    time.sleep(server.delay)
                status, payload, headers = server.reply(body, frame, attempt)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def frames_asked(self) -> list[str]:
        return [r["frame"] for r in self.requests]
