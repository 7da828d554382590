"""A static OpenAI Chat Completions upstream for bench/llm_gateway.py: nginx answering fixed bytes.

    POST /v1/chat/completions          one chat.completion JSON with usage
    POST /stream/v1/chat/completions   an SSE stream: role, five content chunks, the finish
                                       reason, a usage-only chunk, then [DONE]

Two paths rather than one that looks at `stream` in the body, because nginx answers
without reading the body; each gateway gets one model per path. nginx serves these from
its configuration (`return 200`), with one worker, no access log and unbounded keep-alive,
so that it stays far faster than any gateway put in front of it (the benchmark measures it
alone as the first target to show that).
"""

from __future__ import annotations

import getpass
import grp
import os
import shutil
from pathlib import Path

import orjson

MODEL = "bench-static"
CREATED = 1_700_000_000
CONTENT_PIECES = ["Hello", "! How", " can I", " help you", " today?"]
USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


def completion_body() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(CONTENT_PIECES)},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def stream_body() -> bytes:
    def chunk(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> bytes:
        payload = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "choices": choices,
            "usage": usage,
        }
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def delta(content: dict[str, str], finish: str | None = None) -> list[dict[str, object]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    parts = [chunk(delta({"role": "assistant", "content": ""}))]
    parts += [chunk(delta({"content": piece})) for piece in CONTENT_PIECES]
    parts.append(chunk(delta({}, "stop")))
    parts.append(chunk([], USAGE))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _nginx_string(raw: bytes) -> str:
    """A single-quoted nginx string whose value is `raw` (nginx turns \\n back into a newline)."""
    text = raw.decode()
    assert "'" not in text
    return "'" + text.replace("\\", "\\\\").replace("\n", "\\n") + "'"


def nginx_config(directory: Path, port: int) -> str:
    # nginx started as root switches its workers to `nobody`; keep them as the user we are.
    user = f"user {getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name};" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"  {name}_temp_path {directory / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
worker_processes 1;
daemon off;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
{user}
events {{ worker_connections 8192; }}
http {{
  access_log off;
{temp}
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /v1/chat/completions {{
      default_type application/json;
      return 200 {_nginx_string(completion_body())};
    }}
    location = /stream/v1/chat/completions {{
      default_type text/event-stream;
      return 200 {_nginx_string(stream_body())};
    }}
  }}
}}
"""


def nginx_command(directory: Path, port: int) -> list[str]:
    """The command that runs the upstream in the foreground, its configuration written to `directory`."""
    binary = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )
    if binary is None:
        raise SystemExit("nginx is not installed (Debian: apt-get install -y nginx-light)")
    config = directory / "nginx.conf"
    config.write_text(nginx_config(directory, port))
    return [binary, "-c", str(config), "-e", str(directory / "error.log")]
