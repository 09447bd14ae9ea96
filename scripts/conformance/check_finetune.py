"""Checks a fine-tuning file `chorus runs export --format finetune` wrote against the official
openai SDK's types and the rules OpenAI's chat fine-tuning format states.

Usage: check_finetune.py FILE.jsonl
Each line must be one JSON object {"messages": [...], "tools"?: [...], "parallel_tool_calls"?: bool}
(nothing else: OpenAI's uploader rejects a line that is not an example), where
  - every message passes the SDK's ChatCompletionMessageParam two ways: pydantic's TypeAdapter
    (strict, its lazy iterables consumed) and the recursive TypedDict check of check_bodies.py
    (every key known, every required key present, every value of an accepted type);
  - every tool passes ChatCompletionFunctionToolParam the same two ways;
  - messages are non-empty, their roles are system, developer, user, assistant or tool, the
    last is an assistant's with text, each tool message answers an earlier assistant tool call,
    and tool call arguments are JSON.
The SDK (pinned in requirements.txt) has no type for a training example itself (openai.types.fine_tuning
describes jobs and methods), so an example is checked as the chat messages and tools it is made of.
Known-bad lines are checked first and must be rejected, so a checker that accepts anything fails.
Prints one line per failure and a closing "N lines passed, N failed"; exits 1 on any failure.
"""
import json
import os
import sys

from pydantic import TypeAdapter

from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_bodies import check  # noqa: E402

MESSAGE = TypeAdapter(ChatCompletionMessageParam)
TOOL = TypeAdapter(ChatCompletionFunctionToolParam)
ROLES = {"system", "developer", "user", "assistant", "tool"}


def consumed(value):
    """Pydantic validates iterables lazily: walk them so every item is validated."""
    if isinstance(value, dict):
        return {k: consumed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ValidatorIterator":
        return [consumed(v) for v in value]
    return value


def sdk_errors(value, adapter, tp, path):
    errors = []
    try:
        consumed(adapter.validate_python(value, strict=True))
    except Exception as error:  # pydantic.ValidationError, or any failure the SDK types raise
        errors.append(f"{path}: {str(error).splitlines()[0]}")
    check(value, tp, path, errors)
    return errors


def line_errors(text):
    try:
        example = json.loads(text)
    except ValueError as error:
        return [f"not JSON: {error}"]
    if not isinstance(example, dict):
        return ["not a JSON object"]
    errors = [f"$.{key}: not a key of a chat fine-tuning example" for key in sorted(set(example) - {"messages", "tools", "parallel_tool_calls"})]
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return errors + ["$.messages: expected a non-empty array"]
    calls = set()
    for i, message in enumerate(messages):
        path = f"$.messages[{i}]"
        errors += sdk_errors(message, MESSAGE, ChatCompletionMessageParam, path)
        if not isinstance(message, dict):
            continue
        if message.get("role") not in ROLES:
            errors.append(f"{path}.role: {message.get('role')!r} is not a role fine-tuning takes")
        for call in message.get("tool_calls") or []:
            calls.add(call.get("id"))
            try:
                json.loads(call["function"]["arguments"])
            except (KeyError, TypeError, ValueError):
                errors.append(f"{path}: tool call arguments are not JSON")
        if message.get("role") == "tool" and message.get("tool_call_id") not in calls:
            errors.append(f"{path}: answers no earlier tool call ({message.get('tool_call_id')!r})")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant" or not isinstance(last.get("content"), str) or not last["content"]:
        errors.append("$.messages[-1]: the last message must be the assistant's answer, with text")
    tools = example.get("tools", [])
    if not isinstance(tools, list):
        errors.append("$.tools: expected an array")
        tools = []
    for i, tool in enumerate(tools):
        errors += sdk_errors(tool, TOOL, ChatCompletionFunctionToolParam, f"$.tools[{i}]")
    return errors


KNOWN_BAD = [
    '{"messages": []}',
    '{"messages": [{"role": "user", "content": "q"}]}',
    '{"messages": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "a"}]}',
    '{"messages": [{"role": "user", "content": "q", "mood": 1}, {"role": "assistant", "content": "a"}]}',
    '{"messages": [{"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}]}',
    '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "header": "x"}',
    '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "tools": [{"type": "function"}]}',
    '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": null, "tool_calls":'
    ' [{"id": "c", "type": "function", "function": {"name": "t", "arguments": "{"}}]},'
    ' {"role": "tool", "tool_call_id": "c", "content": "r"}, {"role": "assistant", "content": "a"}]}',
]


def main():
    failed = 0
    for bad in KNOWN_BAD:
        if not line_errors(bad):
            print(f"checker accepted a known-bad line: {bad}")
            failed += 1
    passed = 0
    with open(sys.argv[1], encoding="utf-8") as file:
        for number, text in enumerate(file, 1):
            errors = line_errors(text)
            if errors:
                failed += 1
                print(f"line {number}: " + "; ".join(errors))
            else:
                passed += 1
    print(f"{passed} lines passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
