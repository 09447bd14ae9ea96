"""Checks request bodies Chorus sends against the official SDKs' own parameter types.

Usage: check_bodies.py DIR
DIR holds openai-*.json and anthropic-*.json (one request body each) and meta.json
({"anthropic_version": "..."}). Each body is checked two ways:
  1. structurally, against the SDK's TypedDict for the call (CompletionCreateParams /
     MessageCreateParams, streaming or not): every key known, every required key present,
     every value of an accepted type, recursively;
  2. by the SDK itself: client.<api>.create(**body) through an httpx mock transport, which
     raises TypeError for a parameter the SDK does not take.
Before the corpus, known-bad bodies must be rejected, so a checker that accepts anything fails.
Prints one line per failure and a closing "N passed, N failed" line; exits 1 on any failure.
"""
import collections.abc
import glob
import json
import os
import sys
import types
import typing

try:  # the current SDKs ship their HTTP stack as httpx2
    import httpx2 as httpx
except ImportError:
    import httpx
import typing_extensions

import anthropic
import openai
from anthropic import _constants as anthropic_constants
from anthropic.types import message_create_params as anthropic_params
from openai.types.chat import completion_create_params as openai_params


def _origin(tp):
    return typing_extensions.get_origin(tp)


def check(value, tp, path, errors, depth=0):
    """Appends to errors every way `value` fails the annotation `tp`."""
    if depth > 40:
        return
    if isinstance(tp, typing.ForwardRef) or isinstance(tp, str):
        return  # unresolved: accept rather than guess
    if tp is typing.Any or tp is object:
        return
    if isinstance(tp, typing_extensions.TypeAliasType) if hasattr(typing_extensions, "TypeAliasType") else False:
        return check(value, tp.__value__, path, errors, depth + 1)
    origin = _origin(tp)
    args = typing_extensions.get_args(tp)
    if origin in (typing_extensions.Required, typing_extensions.NotRequired, typing_extensions.Annotated):
        return check(value, args[0], path, errors, depth + 1)
    if origin is typing.Union or origin is types.UnionType:
        for option in args:
            trial = []
            check(value, option, path, trial, depth + 1)
            if not trial:
                return
        errors.append(f"{path}: {json.dumps(value)[:80]} matches none of {tp}")
        return
    if origin is typing_extensions.Literal or origin is typing.Literal:
        if value not in args:
            errors.append(f"{path}: {value!r} is not one of {args}")
        return
    if typing_extensions.is_typeddict(tp):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object for {tp.__name__}")
            return
        hints = typing_extensions.get_type_hints(tp, include_extras=True)
        for key in sorted(set(value) - set(hints)):
            errors.append(f"{path}.{key}: not a parameter of {tp.__name__}")
        # Required[...] inside string annotations (PEP 563) escapes __required_keys__: read it off the hints too.
        required = set(tp.__required_keys__) | {k for k, h in hints.items() if _origin(h) is typing_extensions.Required}
        for key in sorted(required - set(value)):
            errors.append(f"{path}: missing required {key} ({tp.__name__})")
        for key in value:
            if key in hints:
                check(value[key], hints[key], f"{path}.{key}", errors, depth + 1)
        return
    if tp is type(None):
        if value is not None:
            errors.append(f"{path}: expected null")
        return
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string")
        return
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean")
        return
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            errors.append(f"{path}: expected an integer")
        return
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected a number")
        return
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object")
        elif len(args) == 2:
            for key, item in value.items():
                check(item, args[1], f"{path}.{key}", errors, depth + 1)
        return
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence) or (
        origin is not None and getattr(origin, "__name__", "") == "SequenceNotStr"
    ) or getattr(tp, "__name__", "") == "SequenceNotStr":
        if not isinstance(value, list):
            errors.append(f"{path}: expected an array")
        elif args:
            for i, item in enumerate(value):
                check(item, args[0], f"{path}[{i}]", errors, depth + 1)
        return
    if isinstance(tp, type):
        return  # a class not modelled above (e.g. a model enum alias)
    return


def structural_errors(provider, body):
    if provider == "openai":
        tp = openai_params.CompletionCreateParamsStreaming if body.get("stream") else openai_params.CompletionCreateParamsNonStreaming
    else:
        tp = anthropic_params.MessageCreateParamsStreaming if body.get("stream") else anthropic_params.MessageCreateParamsNonStreaming
    errors = []
    check(body, tp, "$", errors)
    return errors


def sdk_errors(provider, body):
    """Calls the SDK's create(**body) with a transport that answers without a network."""
    seen = {}

    def handler(request):
        seen["body"] = json.loads(request.content)
        if provider == "openai":
            payload = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}]}
        else:
            payload = {"id": "m", "type": "message", "role": "assistant", "model": body["model"],
                       "content": [{"type": "text", "text": "{}"}], "stop_reason": "end_turn", "stop_sequence": None,
                       "usage": {"input_tokens": 1, "output_tokens": 1}}
        if body.get("stream"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"")
        return httpx.Response(200, json=payload)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    try:
        if provider == "openai":
            client = openai.OpenAI(api_key="test", base_url="http://sdk.invalid/v1", http_client=http, max_retries=0)
            result = client.chat.completions.create(**body)
        else:
            client = anthropic.Anthropic(api_key="test", base_url="http://sdk.invalid", http_client=http, max_retries=0)
            result = client.messages.create(**body)
        if body.get("stream"):
            for _ in result:
                pass
    except TypeError as error:
        return [f"SDK create(**body) refused it: {error}"]
    except Exception as error:  # an empty mock stream may end early; a refused parameter is a TypeError
        if "body" not in seen:
            return [f"SDK create(**body) failed before sending: {type(error).__name__}: {error}"]
    if "body" not in seen:
        return ["SDK sent nothing"]
    return []


def main():
    directory = sys.argv[1]
    passed = failed = 0
    # Known-bad bodies first: the checker must reject each, or it proves nothing.
    controls = [
        ("anthropic", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": 0.5}),
        ("anthropic", {"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        ("openai", {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json"}}),
        ("openai", {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokenz": 5}),
    ]
    for provider, body in controls:
        if structural_errors(provider, body):
            passed += 1
        else:
            failed += 1
            print(f"control: the checker accepted a bad {provider} body: {json.dumps(body)}")
    if not sdk_errors("anthropic", controls[0][1]):
        failed += 1
        print("control: the anthropic SDK accepted temperature; is this the pinned SDK?")
    else:
        passed += 1
    meta = json.load(open(os.path.join(directory, "meta.json")))
    if meta["anthropic_version"] == anthropic_constants.ANTHROPIC_API_VERSION:
        passed += 1
    else:
        failed += 1
        print(f"anthropic-version: Chorus sends {meta['anthropic_version']}, the SDK {anthropic_constants.ANTHROPIC_API_VERSION}")
    files = sorted(glob.glob(os.path.join(directory, "openai-*.json")) + glob.glob(os.path.join(directory, "anthropic-*.json")))
    if not files:
        print(f"no bodies in {directory}")
        failed += 1
    for path in files:
        provider = os.path.basename(path).split("-")[0]
        body = json.load(open(path))
        errors = structural_errors(provider, body) + sdk_errors(provider, body)
        if errors:
            failed += 1
            for error in errors:
                print(f"{os.path.basename(path)}: {error}")
        else:
            passed += 1
    print(f"conformance: openai {openai.__version__}, anthropic {anthropic.__version__}, {len(files)} bodies")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
