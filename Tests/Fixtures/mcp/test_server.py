"""An MCP stdio server for Chorus's tool tests, written with the official `mcp` package
(pinned in scripts/mcp/requirements.txt): `echo` answers its text, `shout` fails as a
tool error, `crash` kills the server in the middle of the call, `wait` sleeps, `flood` answers
two megabytes. An argument names a
file to which each start appends the server's process id."""
import os
import sys
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("chorus-test")


@server.tool()
def echo(text: str) -> str:
    """Answers with the text it was given."""
    return "echo: " + text


@server.tool()
def shout(text: str) -> str:
    """Always fails, as a tool error."""
    raise ValueError("shouting is not allowed: " + text)


@server.tool()
def crash(text: str) -> str:
    """Ends the server process in the middle of the call."""
    os._exit(3)


@server.tool()
def wait(text: str) -> str:
    """Sleeps for ten seconds."""
    time.sleep(10)
    return "woke"


@server.tool()
def flood(text: str) -> str:
    """Answers with two megabytes of text."""
    return "x" * (2 << 20)


if __name__ == "__main__":
    if len(sys.argv) > 1:  # a log file: one line per start, so a test can count them
        with open(sys.argv[1], "a") as f:
            f.write(f"{os.getpid()}\n")
    server.run()
