"""Extractor throughput: MB/s of each extractor for chunk sizes 1, 16 and 256 characters
on realistic XML replies of 10 KB, 1 MB and 10 MB, and how time grows with the input.

    .venv/bin/python -m benchmarks.extractors [--quick]

``--quick`` skips the 10 MB inputs. The reply is ``<response><thought/><actions>REPLY
</actions><text>…</text></response>`` with the text most of it (prose with some
non-ASCII); MB counts UTF-8 bytes. Chunks are cut before timing; the time covers every
``push`` and the final ``flush`` (best of 20 runs for 10 KB, 3 for 1 MB, 1 for 10 MB).
Linearity is time(10 MB) / time(1 MB): about 10 when the cost is linear in the input.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from streaming.extractors import (
    ActionStreamFilter,
    PassthroughExtractor,
    Pipeline,
    ResponseStreamExtractor,
    StreamExtractor,
    ValidationStreamExtractor,
    XmlTagExtractor,
)

CHUNK_SIZES = (1, 16, 256)
SIZES = {"10 KB": 10_000, "1 MB": 1_000_000, "10 MB": 10_000_000}
PROSE = (
    "Streaming lets the reader see the answer while the model is still writing it; "
    "café, naïve, 你好, 😀 and a few <b>tags</b> keep the scanner honest. "
)


def _ignore(*_args: Any) -> None:
    """A callback that drops what it is given."""


EXTRACTORS: dict[str, Callable[[], StreamExtractor]] = {
    "PassthroughExtractor": PassthroughExtractor,
    "XmlTagExtractor('text')": lambda: XmlTagExtractor("text"),
    "ResponseStreamExtractor": ResponseStreamExtractor,
    "ActionStreamFilter": ActionStreamFilter,
    "ValidationStreamExtractor (level 0)": lambda: ValidationStreamExtractor(
        level=0,
        schema=["thought", "actions", "text"],
        stream_fields=["text"],
        on_chunk=_ignore,
        on_event=_ignore,
    ),
    "Pipeline(Response, Passthrough)": lambda: Pipeline(
        ResponseStreamExtractor(), PassthroughExtractor()
    ),
}


def reply(size: int) -> str:
    """A model reply of about ``size`` UTF-8 bytes whose ``<text>`` is most of it."""
    head = (
        "<response><thought>The user greets me; a direct reply is enough.</thought>"
        "<actions>REPLY</actions><text>"
    )
    tail = "</text></response>"
    body_bytes = size - len((head + tail).encode())
    per_copy = len(PROSE.encode())
    return head + PROSE * max(1, body_bytes // per_copy) + tail


def measure(factory: Callable[[], StreamExtractor], chunks: list[str]) -> float:
    """Seconds to push every chunk through a fresh extractor and flush it."""
    extractor = factory()
    push = extractor.push
    start = time.perf_counter()
    for chunk in chunks:
        push(chunk)
    extractor.flush()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 10 MB inputs")
    args = parser.parse_args()
    sizes = {label: size for label, size in SIZES.items() if not (args.quick and size > 10**6)}
    texts = {label: reply(size) for label, size in sizes.items()}
    header = ["extractor", "chunk", *(f"{label} MB/s" for label in sizes)]
    if "10 MB" in sizes:
        header.append("t(10 MB)/t(1 MB)")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for name, factory in EXTRACTORS.items():
        for chunk_size in CHUNK_SIZES:
            row = [name, str(chunk_size)]
            seconds: dict[str, float] = {}
            for label, text in texts.items():
                chunks = [text[i : i + chunk_size] for i in range(0, len(text), chunk_size)]
                rounds = 20 if len(text) <= 10**5 else 3 if len(text) <= 10**6 else 1
                seconds[label] = min(measure(factory, chunks) for _ in range(rounds))
                megabytes = len(text.encode()) / 1e6
                row.append(f"{megabytes / seconds[label]:.1f}")
                del chunks
            if "10 MB" in seconds:
                row.append(f"{seconds['10 MB'] / seconds['1 MB']:.1f}")
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
