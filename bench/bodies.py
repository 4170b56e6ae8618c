"""Request bodies of a chosen size for the JSON benches: a chat conversation grown to about N bytes.

    body(100)     -> today's CHAT_BODY (one short user message, 100 bytes)
    body(1024)    -> a few ~200-byte messages, 1,024 bytes exactly
    body(32768)   -> a conversation of 169 such messages, 32,768 bytes exactly

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python -m bench.bodies 32768 110
                  # instructions of 110 body parses (read_body_fields); minus those of 10: 100 parses

A long body is a history of many messages (what an SDK sends for a long chat), not one huge
string: a JSON parser's work grows with the number of values as well as with the bytes.
"""

from __future__ import annotations

import argparse
import json

from bench.targets import CHAT_BODY

DEFAULT_SIZES = (100, 1024, 32768)
_TURN = "The quick brown fox jumps over the lazy dog, then naps in the sun for a while. " * 2


def body(size: int) -> bytes:
    """A chat-completions JSON body of `size` bytes (at least CHAT_BODY's own length)."""
    base = CHAT_BODY.encode()
    if size <= len(base) + 1:
        return base
    data = json.loads(base)
    messages = data["messages"]
    while True:  # whole turns while they fit, then the last message's content padded to the size
        role = "assistant" if len(messages) % 2 else "user"
        grown = {**data, "messages": [*messages, {"role": role, "content": _TURN}]}
        if len(json.dumps(grown)) > size:
            break
        messages = grown["messages"]
    last = messages[-1]
    last["content"] += "x" * (size - len(json.dumps({**data, "messages": messages})))
    out = json.dumps({**data, "messages": messages}).encode()
    assert len(out) == size, (len(out), size)
    return out


def sizes(text: str) -> list[int]:
    """'100,1024,32768' (or 1k, 32k) -> [100, 1024, 32768]; an argparse type."""
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        try:
            out.append(int(item[:-1]) * 1024 if item.endswith("k") else int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected sizes in bytes like 100,1024,32768 or 1k, got {item!r}"
            ) from None
        if out[-1] < 1:
            raise argparse.ArgumentTypeError(f"a body size is at least 1 byte, got {item!r}")
    return out


def label(size: int) -> str:
    """1024 -> '1k', 32768 -> '32k', 100 -> '100'"""
    return f"{size // 1024}k" if size >= 1024 and size % 1024 == 0 else str(size)


def main() -> None:
    """`python -m bench.bodies SIZE N`: parse a SIZE-byte body N times as the limits concern does
    (`read_body_fields`), to be counted under valgrind (N=110 minus N=10: 100 parses)."""
    import io
    import os
    import sys

    from app.rules.scope import read_body_fields

    data = body(int(sys.argv[1]))
    for _ in range(int(sys.argv[2])):
        read_body_fields(io.BytesIO(data).read, 1 << 20)
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown in the count


if __name__ == "__main__":
    main()
