"""A Streamable HTTP MCP server for Chorus's tool tests, written with the official `mcp`
package (pinned in scripts/mcp/requirements.txt): `echo` answers its text, `progress` sends
three log notifications on the answer's event stream before its result, `shout` fails as a
tool error, `hang` never answers, `crash` ends the server in the middle of the call.

    http_server.py PORT READY_FILE [--token TOKEN] [--json] [--log FILE]

PORT 0 takes any free port; once the server accepts connections, its port is written to
READY_FILE. With --token, a request without `Authorization: Bearer TOKEN` is answered 401.
With --json, answers are single JSON messages rather than event streams. With --log, each
request appends a line: its method, and whether it carried a session id and a protocol version.
"""
import asyncio
import os
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("chorus-http-test")


@server.tool()
def echo(text: str) -> str:
    """Answers with the text it was given."""
    return "echo: " + text


@server.tool()
async def progress(text: str, ctx: Context) -> str:
    """Reports three steps, then answers."""
    for step in range(3):
        await ctx.info(f"step {step + 1} of 3")
        await asyncio.sleep(0.05)
    return "done: " + text


@server.tool()
def shout(text: str) -> str:
    """Always fails, as a tool error."""
    raise ValueError("shouting is not allowed: " + text)


@server.tool()
async def hang(text: str) -> str:
    """Never answers."""
    await asyncio.sleep(3600)
    return "woke"


@server.tool()
def crash(text: str) -> str:
    """Ends the server process in the middle of the call."""
    os._exit(3)


class Gate:
    """Answers 401 to a request without the bearer token; logs each request."""

    def __init__(self, app, token, log):
        self.app, self.token, self.log = app, token, log

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if self.log:
                with open(self.log, "a") as f:
                    session = "session" if b"mcp-session-id" in headers else "-"
                    version = "version" if b"mcp-protocol-version" in headers else "-"
                    f.write(f"{scope['method']} {session} {version}\n")
            if self.token and headers.get(b"authorization") != b"Bearer " + self.token.encode():
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await self.app(scope, receive, send)


async def main(argv):
    port, ready = int(argv[1]), argv[2]
    token = argv[argv.index("--token") + 1] if "--token" in argv else None
    log = argv[argv.index("--log") + 1] if "--log" in argv else None
    app = Gate(server.streamable_http_app(json_response="--json" in argv, host="127.0.0.1"), token, log)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    serving = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started and not serving.done():
        await asyncio.sleep(0.02)
    with open(ready + ".tmp", "w") as f:
        f.write(str(sock.getsockname()[1]))
    os.rename(ready + ".tmp", ready)
    await serving


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
