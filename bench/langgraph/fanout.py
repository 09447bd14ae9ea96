"""LangGraph's canonical map-reduce against `chorus sim` (the simulated provider, a real
HTTP server on loopback), for comparison with `chorus run` on the same fan-out.

plan (planner-N answers N subtasks) -> Send("work", subtask) per subtask -> work (one chat
call each; findings merged by an operator.add reducer) -> synthesise (one chat call over all
findings). The same shape as bench's Chorus workflow: plan -> foreach -> reconcile agent.

Prints one JSON object: wall seconds and CPU seconds of the graph run itself (imports and
start-up excluded, which favours LangGraph), peak RSS, and the number of findings.
Usage: fanout.py --url http://127.0.0.1:PORT/v1 --n 1000 --p 256 [--checkpoint trace.sqlite] [--stream]
--stream: the workers and the synthesis stream through langchain-openai's ChatOpenAI and the
run is `astream(stream_mode="messages")`, every token a message chunk, as a LangGraph user
streams an answer.
"""
import argparse
import asyncio
import json
import operator
import resource
import time
from typing import Annotated, TypedDict

import httpx
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from openai import AsyncOpenAI


class State(TypedDict):
    question: str
    subtasks: list[str]
    findings: Annotated[list[str], operator.add]
    answer: str


class WorkState(TypedDict):
    subtask: str


def build(client: AsyncOpenAI, n: int, llm=None) -> StateGraph:
    async def plan(state: State) -> dict:
        reply = await client.chat.completions.create(
            model=f"planner-{n}", messages=[{"role": "user", "content": state["question"]}],
            response_format={"type": "json_object"})
        return {"subtasks": json.loads(reply.choices[0].message.content)["subtasks"]}

    def fan_out(state: State) -> list[Send]:
        return [Send("work", {"subtask": s}) for s in state["subtasks"]]

    async def work(state: WorkState) -> dict:
        if llm:  # streamed through LangChain, so astream(stream_mode="messages") sees every token
            reply = await llm.ainvoke([("user", state["subtask"])], max_tokens=300)
            return {"findings": [reply.content]}
        reply = await client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": state["subtask"]}], max_tokens=300)
        return {"findings": [reply.choices[0].message.content]}

    async def synthesise(state: State) -> dict:
        text = "".join(f"- {f}\n" for f in state["findings"])
        if llm:
            return {"answer": (await llm.ainvoke([("user", "Summarise:\n" + text)])).content}
        reply = await client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "Summarise:\n" + text}])
        return {"answer": reply.choices[0].message.content}

    graph = StateGraph(State)
    graph.add_node("plan", plan)
    graph.add_node("work", work)
    graph.add_node("synthesise", synthesise)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["work"])
    graph.add_edge("work", "synthesise")
    graph.add_edge("synthesise", END)
    return graph


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--p", type=int, required=True)
    parser.add_argument("--checkpoint", help="a SQLite file for langgraph-checkpoint-sqlite's AsyncSqliteSaver")
    parser.add_argument("--stream", action="store_true",
                        help="workers and synthesis stream through langchain-openai's ChatOpenAI, the run is astream(stream_mode=\"messages\")")
    args = parser.parse_args()
    limits = httpx.Limits(max_connections=args.p, max_keepalive_connections=args.p)
    client = AsyncOpenAI(base_url=args.url, api_key="sim", max_retries=2, timeout=120,
                         http_client=httpx.AsyncClient(limits=limits, timeout=120))
    llm = None
    if args.stream:
        from langchain_openai import ChatOpenAI
        llm = ChatOpenAI(model="sim-small", base_url=args.url, api_key="sim", streaming=True, max_retries=2, timeout=120,
                         http_async_client=httpx.AsyncClient(limits=limits, timeout=120))
    graph = build(client, args.n, llm)
    config = {"max_concurrency": args.p, "recursion_limit": 100, "configurable": {"thread_id": "bench"}}
    state = {"question": "What limits fan-out?", "subtasks": [], "findings": [], "answer": ""}

    stream_counts = {}

    async def run(app):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        if llm:
            result, tokens = None, 0
            async for mode, chunk in app.astream(state, config=config, stream_mode=["messages", "values"]):
                if mode == "messages":
                    tokens += 1
                else:
                    result = chunk
            stream_counts["message_chunks"] = tokens
        else:
            result = await app.ainvoke(state, config=config)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        return result, wall, cpu

    if args.checkpoint:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        async with AsyncSqliteSaver.from_conn_string(args.checkpoint) as saver:
            result, wall, cpu = await run(graph.compile(checkpointer=saver))
    else:
        result, wall, cpu = await run(graph.compile())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": args.n, "p": args.p, "checkpoint": bool(args.checkpoint), "findings": len(result["findings"]),
                      "answered": bool(result["answer"]), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                      "peak_rss_mb": round(peak / 1024), "stream": args.stream, **stream_counts}))


if __name__ == "__main__":
    asyncio.run(main())
