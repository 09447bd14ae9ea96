"""A Streamable HTTP MCP server for Chorus's tool tests, written with the official `mcp`
package (pinned in scripts/mcp/requirements.txt): `echo` answers its text, `progress` sends
three log notifications on the answer's event stream before its result, `shout` fails as a
tool error, `hang` never answers, `crash` ends the server in the middle of the call, `pinged`
pings the client over its GET stream and answers once the client has answered, `dropped`
sends a log notification and answers a moment later on an answer stream the server cuts
after that notification (the connection closed mid-stream, as a proxy or a restart would).

    http_server.py PORT READY_FILE [--token TOKEN] [--json] [--log FILE] [--resumable]
                   [--no-get] [--forget | --forget-then-refuse]

PORT 0 takes any free port; once the server accepts connections, its port is written to
READY_FILE. With --token, a request without `Authorization: Bearer TOKEN` is answered 401.
With --json, answers are single JSON messages rather than event streams. With --log, each
request appends a line: its method, and whether it carried a session id and a protocol version
(and a Last-Event-ID: "resume"), and each tool call appends its tool's name to FILE.calls.
With --resumable, events are kept in memory and carry ids, so that a client can resume a
stream with Last-Event-ID (the SDK's EventStore), and the server asks for 100 ms between
reconnections. With --no-get, a GET (the stream for the server's own messages) is answered 405.
With --forget, every tool call is answered 404, as if its session had just expired (progress's 300 ms late);
with --forget-then-refuse, so is every call, and every initialize after the first 404 is answered 503.
"""
import asyncio
import json
import os
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.shared.exceptions import MCPError

server = MCPServer("chorus-http-test")
CALLS = None


def called(name):
    if CALLS:
        with open(CALLS, "a") as f:
            f.write(name + "\n")


@server.tool()
def echo(text: str) -> str:
    """Answers with the text it was given."""
    called("echo")
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


@server.tool()
async def pinged(text: str, ctx: Context) -> str:
    """Pings the client, which hears it only on its GET stream, then answers."""
    called("pinged")
    try:
        await ctx.session.send_ping()
        return "pinged: the client answered"
    except MCPError as error:
        return "pinged: the client answered with an error: " + error.error.message


@server.tool()
async def dropped(text: str, ctx: Context) -> str:
    """Sends a notification, then answers 300 ms later; the Gate cuts its answer stream
    after the notification."""
    called("dropped")
    await ctx.info("working on " + text)
    await asyncio.sleep(0.3)
    return "survived: " + text


class MemoryEventStore(EventStore):
    """Every event of every stream, in order, with ids counted from 1."""

    def __init__(self):
        self.events = []

    async def store_event(self, stream_id, message):
        self.events.append((str(len(self.events) + 1), stream_id, message))
        return self.events[-1][0]

    async def replay_events_after(self, last_event_id, send_callback):
        index = next((i for i, event in enumerate(self.events) if event[0] == last_event_id), None)
        if index is None:
            return None
        stream_id = self.events[index][1]
        for event_id, stream, message in self.events[index + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


class Cut(Exception):
    """Raised into the app to end a response mid-stream."""


class Gate:
    """Answers 401 to a request without the bearer token, and 405 to a GET with --no-get;
    logs each request; cuts the answer stream of a call of `dropped` after its first message."""

    def __init__(self, app, token, log, no_get, forget):
        self.app, self.token, self.log, self.no_get, self.forget = app, token, log, no_get, forget
        self.forgotten = False

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if self.log:
                with open(self.log, "a") as f:
                    session = "session" if b"mcp-session-id" in headers else "-"
                    version = "version" if b"mcp-protocol-version" in headers else "-"
                    resume = " resume" if b"last-event-id" in headers else ""
                    f.write(f"{scope['method']} {session} {version}{resume}\n")
            if self.token and headers.get(b"authorization") != b"Bearer " + self.token.encode():
                return await self.refuse(send, 401, b"unauthorized")
            if self.no_get and scope["method"] == "GET":
                return await self.refuse(send, 405, b"no GET stream here")
            if scope["method"] == "POST":
                return await self.post(scope, receive, send)
        await self.app(scope, receive, send)

    async def refuse(self, send, status, text):
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": text})

    async def post(self, scope, receive, send):
        """Reads the body to see which tool a call is for; a call of `dropped` has its answer
        stream cut after the first message, the connection closed without the end of the body."""
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if self.forget == "refuse" and self.forgotten and isinstance(request, dict) and request.get("method") == "initialize":
            return await self.refuse(send, 503, b"not accepting sessions")
        if self.forget and isinstance(request, dict) and request.get("method") == "tools/call":
            self.forgotten = True
            # progress's 404 comes later than the others': it is still waiting when an
            # earlier 404 has the client start a new session.
            if request["params"].get("name") == "progress":
                await asyncio.sleep(0.3)
            return await self.refuse(send, 404, b"no such session")
        if not isinstance(request, dict) or request.get("method") != "tools/call" or request["params"].get("name") != "dropped":
            return await self.app(scope, replay, send)
        state = {"cut": False}

        async def cutting(message):
            if state["cut"]:
                raise Cut()
            await send(message)
            if message["type"] == "http.response.body" and b'"jsonrpc"' in message.get("body", b""):
                state["cut"] = True
                raise Cut()

        try:
            await self.app(scope, replay, cutting)
        except BaseException:
            if not state["cut"]:
                raise


async def main(argv):
    port, ready = int(argv[1]), argv[2]
    token = argv[argv.index("--token") + 1] if "--token" in argv else None
    log = argv[argv.index("--log") + 1] if "--log" in argv else None
    global CALLS
    CALLS = log + ".calls" if log else None
    resumable = {"event_store": MemoryEventStore(), "retry_interval": 100} if "--resumable" in argv else {}
    app = Gate(server.streamable_http_app(json_response="--json" in argv, host="127.0.0.1", **resumable), token, log, "--no-get" in argv,
               "refuse" if "--forget-then-refuse" in argv else "--forget" in argv)
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
