"""Many blocking calls in flight at once, results in input order: how the vLLM server client keeps a server busy.

    results = map_in_flight(post_one_prompt, batches, max_in_flight=256)       # results[i] is post(batches[i])

A `vllm serve` process batches whatever requests it holds (continuous batching), so its throughput depends on how
many requests the client keeps outstanding. With n samples per request, 256 requests in flight are 256 * n sequences
the server can batch (open-r1's generator keeps ~1,000 requests outstanding; the client here used to hold 16, i.e.
64 sequences at n = 4, an idle GPU for a 32B teacher). The calls are blocking HTTP requests, so threads are the
simple tool: they spend their time waiting on sockets, not holding the GIL.

Order: the result list is indexed like the input, whatever order the calls finish in. Failure: the first exception
(in input order of the failed calls that were collected) is raised once the calls already running have returned;
the calls not yet started are cancelled, so a dead server costs one timeout, not one per request.
`on_result(i, result)`, when given, runs in the caller's thread as each call finishes (in completion order): the
place to start scoring finished work while the rest is still being generated.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")


def map_in_flight(fn: Callable[[T], Any], items: Sequence[T], max_in_flight: int,
                  on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """[fn(x) for x in items], with at most `max_in_flight` calls running at a time (and exactly that many while at
    least that many remain). Example: 300 items, max_in_flight 256 -> 256 calls start at once; each one that returns
    lets one of the 44 waiting start; the list comes back in the order of `items`."""
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight={max_in_flight} must be at least 1")
    results: list[Any] = [None] * len(items)
    if not items:
        return results
    if len(items) == 1:  # no thread for the common single-request case
        results[0] = fn(items[0])
        if on_result is not None:
            on_result(0, results[0])
        return results
    with ThreadPoolExecutor(max_workers=min(max_in_flight, len(items)), thread_name_prefix="in-flight") as pool:
        index = {pool.submit(fn, x): i for i, x in enumerate(items)}
        pending = set(index)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=index.__getitem__):
                    results[index[fut]] = fut.result()  # raises the call's exception
                    if on_result is not None:
                        on_result(index[fut], results[index[fut]])
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return results
