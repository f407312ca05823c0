"""Where a server's event loop stalls: set ``STREAMING_BENCH_STALLS=<file>`` and the
capacity app's process appends to that file one line per stall of its loop longer than
``STREAMING_BENCH_STALL_MS`` (default 200), with the main thread's stack sampled while it
lasted, and one line per garbage collection that took longer than 50 ms.

A thread watches a timestamp that a task on the loop renews every 10 ms: when the
timestamp is older than the threshold, the thread samples the main thread's stack every
20 ms until the loop runs again, then writes the stall's length and the most frequent
stacks. Only the benchmark uses it; the library starts nothing of the kind.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import sys
import threading
import time
import traceback
from typing import Any

_started = False


def start() -> None:
    """Start watching the running loop, once per process, when the setting asks for it."""
    global _started
    target = os.environ.get("STREAMING_BENCH_STALLS")
    if _started or not target:
        return
    _started = True
    threshold = float(os.environ.get("STREAMING_BENCH_STALL_MS", "200")) / 1000
    state = {"tick": time.monotonic()}
    main = threading.main_thread().ident
    out = open(target, "a", buffering=1)  # noqa: SIM115 (open for the process's life)

    async def tick() -> None:
        while True:
            state["tick"] = time.monotonic()
            await asyncio.sleep(0.01)

    def watch() -> None:
        while True:
            time.sleep(0.02)
            if time.monotonic() - state["tick"] < threshold:
                continue
            began = state["tick"]
            stacks: collections.Counter[str] = collections.Counter()
            while state["tick"] == began:
                frame = sys._current_frames().get(main)  # type: ignore[arg-type]
                if frame is not None:
                    stacks["".join(traceback.format_stack(frame)[-8:])] += 1
                time.sleep(0.02)
            length = state["tick"] - began
            out.write(f"STALL {length * 1000:.0f} ms at {time.time():.3f}\n")
            for stack, count in stacks.most_common(3):
                out.write(f"  {count} samples:\n{stack}\n")

    gc_began: dict[str, float] = {}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_began["t"] = time.perf_counter()
            return
        spent = time.perf_counter() - gc_began.get("t", time.perf_counter())
        if spent > 0.05:
            out.write(
                f"GC gen {info['generation']} {spent * 1000:.0f} ms, collected "
                f"{info['collected']} at {time.time():.3f}\n"
            )

    gc.callbacks.append(on_gc)
    asyncio.get_running_loop().create_task(tick())
    threading.Thread(target=watch, daemon=True, name="loop-stalls").start()
