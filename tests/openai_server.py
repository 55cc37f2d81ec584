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

    def __init__(self, reply: Callable, delay: float = 0.0, polls_to_finish: int = 1):
        self.reply, self.delay = reply, delay
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        # the Batch API: uploaded files, batches, and how many polls a batch takes
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.polls_to_finish = polls_to_finish
        server = self

        class Handler(BaseHTTPRequestHandler):
            def send_json(self, status: int, payload) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                with server.lock:
                    if self.path.endswith("/content"):
                        data = server.files[self.path.split("/")[-2]]
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    elif self.path.rstrip("/").endswith("/batches") or "/batches?" in self.path:
                        data = list(server.batches.values())
                        self.send_json(200, {"object": "list", "data": data, "has_more": False})
                    else:
                        self.send_json(200, server.poll(self.path.split("/")[-1]))

            def do_POST(self):  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path.endswith("/files"):
                    with server.lock:
                        self.send_json(200, server.upload(self.headers["Content-Type"], raw))
                    return
                body = json.loads(raw)
                if self.path.endswith("/batches"):
                    with server.lock:
                        self.send_json(200, server.create_batch(body))
                    return
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

    # -- the Batch API (files, batches); called with the lock held
    def upload(self, content_type: str, raw: bytes) -> dict:
        from email.parser import BytesParser

        msg = BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        part = next(
            p
            for p in msg.get_payload()
            if p.get_param("name", header="content-disposition") == "file"
        )
        fid = f"file-{len(self.files)}"
        self.files[fid] = part.get_payload(decode=True)
        return {
            "id": fid,
            "object": "file",
            "bytes": len(self.files[fid]),
            "created_at": int(time.time()),
            "filename": "batch.jsonl",
            "purpose": "batch",
        }

    def create_batch(self, body: dict) -> dict:
        bid = f"batch_{len(self.batches)}"
        self.batches[bid] = {
            "id": bid, "object": "batch", "endpoint": body["endpoint"], "status": "in_progress",
            "input_file_id": body["input_file_id"], "completion_window": "24h",
            "created_at": int(time.time()), "polls": 0,
        }  # fmt: skip
        return self.batches[bid]

    def poll(self, bid: str) -> dict:
        b = self.batches[bid]
        b["polls"] += 1
        if b["status"] == "in_progress" and b["polls"] >= self.polls_to_finish:
            out = []
            for line in self.files[b["input_file_id"]].decode().splitlines():
                req = json.loads(line)
                self.requests.append(
                    {"json": req["body"], "frame": req["custom_id"], "headers": {}}
                )
                status, payload, _ = self.reply(req["body"], req["custom_id"], 1)
                out.append(
                    {
                        "id": f"resp-{req['custom_id']}",
                        "custom_id": req["custom_id"],
                        "response": {"status_code": status, "body": payload},
                        "error": None,
                    }
                )
            fid = f"file-{len(self.files)}"
            self.files[fid] = "".join(json.dumps(o) + "\n" for o in out).encode()
            b.update(status="completed", output_file_id=fid)
        return b
