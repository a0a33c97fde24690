"""A small process pool for the parsing rewards: chunked work, a per-item timeout, and replacement of hung workers.

Why not `multiprocessing.Pool`/`concurrent.futures`: neither can kill one task that hangs in C code (sympy on
`9^{9^{9^{9}}}`), and per-item tasks cost a round trip each (too slow for 1,000+ items/s). Here:

- Workers are started once (lazily, on the first `run`) with a "forkserver" context ("spawn" where forkserver does not
  exist), never "fork": the learner process has torch threads. Each worker builds its rewards once, from picklable
  (import path, params) specs, and lives until `close()`.
- The parent sends *chunks* of items (a few per worker per batch) over a pipe; the worker scores every item of a
  chunk with every requested reward and sends the chunk's results back in one message.
- The worker times each (item, reward) with a SIGALRM `deadline` of `timeout_s` (or that reward's entry of
  `timeouts`): Python-level runaways (most sympy blow-ups) raise there and score 0 with status TIMEOUT. Before each
  item the worker writes (item, reward, start time) into shared memory; a worker still on the same item `timeout_s +
  grace` later is stuck in C code: the parent kills it, records that item as TIMEOUT, starts a replacement, and
  re-runs the chunk's other items one by one.
- A worker that dies (e.g. MemoryError under the address-space cap) is handled the same way, with status ERROR.

    >>> pool = WorkerPool([("rewards.math.accuracy:make_accuracy", {})], num_workers=1, timeout_s=2.0)
    >>> values, status, seconds = pool.run(["<answer> 4 </answer>", "<answer> 5 </answer>"], {"answer": ["4", "4"]})
    >>> values, status
    ([[1.0, 0.0]], [[0, 0]])
    >>> pool.close()
"""
from __future__ import annotations

import math
import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

OK, TIMEOUT, ERROR = 0, 1, 2
_IDLE = -1.0
_STARTUP_LIMIT_S = 300.0  # a worker that has not started an item this long after being sent a chunk is dead


def mp_context():
    return mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")


def _worker_main(conn, progress, specs, timeouts: list[float], max_memory_mb: int | None) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business; it kills us on close
    if max_memory_mb:
        try:
            import resource
            limit = max_memory_mb * 2 ** 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
    import rewards  # noqa: F401  (registers the built-ins)
    from rewards.scoring.deadline import ItemTimeout, deadline
    from rewards.scoring.registry import get_reward

    fns: list[Any] = []
    for ref, params in specs:
        try:
            fns.append(get_reward(ref, **params))
        except Exception as e:  # reported with every item, so the parent can say what went wrong
            fns.append(f"building reward {ref!r} failed: {type(e).__name__}: {e}")
    for fn in fns:  # one-off initialisation (math-verify's parsers: ~1 s), before any item is timed
        try:
            if not isinstance(fn, str):
                fn.warmup()
        except Exception:  # noqa: BLE001 (a broken reward reports itself per item)
            pass
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        chunk_id, reward_ids, texts, cols = msg
        out = [[None] * len(texts) for _ in reward_ids]
        for j, text in enumerate(texts):
            row = {k: [v[j]] for k, v in cols.items()}
            for r, rid in enumerate(reward_ids):
                fn = fns[rid]
                progress[2] = time.monotonic()
                progress[1], progress[0] = r, j
                t0 = time.perf_counter()
                try:
                    if isinstance(fn, str):
                        raise RuntimeError(fn)
                    with deadline(timeouts[rid]):
                        value = fn([text], **row)[0]
                    if value is not None:
                        value = float(value)
                    res = (value, OK)
                except ItemTimeout:
                    res = (0.0, TIMEOUT)
                except BaseException as e:  # noqa: BLE001 (a reward must never take the worker down)
                    res = (f"{type(e).__name__}: {str(e)[:200]}", ERROR)
                out[r][j] = (*res, time.perf_counter() - t0)
        progress[0] = _IDLE
        extra = [{} if isinstance(fns[rid], str) else fns[rid].drain_metrics() for rid in reward_ids]
        conn.send((chunk_id, out, extra))


@dataclass
class _Chunk:
    items: list[int]  # global item indices
    rids: list[int]  # reward (spec) indices


class _Worker:
    def __init__(self, ctx, specs, timeouts: list[float], max_memory_mb: int | None):
        self.conn, child = ctx.Pipe(duplex=True)
        self.progress = ctx.RawArray("d", 3)  # item position, reward position, start time (time.monotonic)
        self.progress[0] = _IDLE
        self.proc = ctx.Process(target=_worker_main, args=(child, self.progress, specs, timeouts, max_memory_mb),
                                daemon=True, name="reward-worker")
        self.proc.start()
        child.close()
        self.chunk: _Chunk | None = None
        self.chunk_id = -1
        self.sent_at = 0.0

    def current(self) -> tuple[int, int, float]:
        """(item position, reward position, start time) or (-1, -1, 0) between items; read twice to be consistent."""
        while True:
            a = (self.progress[0], self.progress[1], self.progress[2])
            if a == (self.progress[0], self.progress[1], self.progress[2]):
                return (-1, -1, 0.0) if a[0] < 0 else (int(a[0]), int(a[1]), a[2])

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class WorkerPool:
    """`num_workers` processes that evaluate `specs[k] = (import path, params)` rewards on chunks of items."""

    def __init__(self, specs: list[tuple[str, dict]], num_workers: int = 2, timeout_s: float = 5.0,
                 max_chunk: int = 256, grace_s: float | None = None, max_memory_mb: int | None = 4096,
                 timeouts: list[float] | None = None):
        """`timeouts`: a per-item deadline per spec (default `timeout_s` for each); the parent's kill of a worker
        stuck in C code comes `grace_s` (default half the deadline, at least 0.5 s) after its item's deadline."""
        if num_workers < 1:
            raise ValueError(f"WorkerPool needs num_workers >= 1, got {num_workers}")
        self.specs, self.num_workers, self.timeout_s, self.max_chunk = list(specs), num_workers, timeout_s, max_chunk
        self.timeouts = [float(timeout_s)] * len(self.specs) if timeouts is None else [float(t) for t in timeouts]
        if len(self.timeouts) != len(self.specs):
            raise ValueError(f"WorkerPool: {len(self.timeouts)} timeouts for {len(self.specs)} reward specs")
        self.grace_s = grace_s
        self.max_memory_mb = max_memory_mb
        self.workers: list[_Worker] = []
        self.replaced = 0  # workers killed and replaced so far (hung or dead)
        self.last_metrics: list[dict[str, float]] = []  # per requested reward: its drain_metrics() of the last run
        self._next_chunk = 0

    def start(self) -> None:
        if not self.workers:
            ctx = mp_context()
            self.workers = [_Worker(ctx, self.specs, self.timeouts, self.max_memory_mb)
                            for _ in range(self.num_workers)]

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.replaced += 1
        self.workers[self.workers.index(w)] = _Worker(mp_context(), self.specs, self.timeouts, self.max_memory_mb)

    def run(self, texts: list[str], cols: dict[str, list], rids: list[int] | None = None
            ) -> tuple[list[list[Any]], list[list[int]], list[float]]:
        """Score every text with every reward in `rids` (default: all specs). Returns values[k][i] (float/None; an
        error message string when status is ERROR), status[k][i] (OK/TIMEOUT/ERROR) and seconds[k] (summed item
        times), k indexing `rids`."""
        self.start()
        rids = list(range(len(self.specs))) if rids is None else list(rids)
        n = len(texts)
        values: list[list[Any]] = [[None] * n for _ in rids]
        status: list[list[int]] = [[OK] * n for _ in rids]
        seconds = [0.0] * len(rids)
        self.last_metrics = [{} for _ in rids]
        pos_of = {rid: k for k, rid in enumerate(rids)}
        size = max(1, min(self.max_chunk, math.ceil(n / (2 * self.num_workers))))
        queue = deque(_Chunk(list(range(s, min(s + size, n))), list(rids)) for s in range(0, n, size))
        busy: dict[int, _Worker] = {}  # chunk id -> worker
        hard_limit = [t + (max(0.5, 0.5 * t) if self.grace_s is None else self.grace_s) for t in self.timeouts]

        def record(item: int, rid: int, res: tuple) -> None:
            k = pos_of[rid]
            values[k][item], status[k][item] = res[0], res[1]
            seconds[k] += res[2]

        def salvage(w: _Worker, why: int, elapsed: float) -> None:
            """w hung or died on its chunk: record the culprit, re-run the rest one item at a time."""
            chunk = w.chunk
            j, r, _ = w.current()
            if j < 0:  # died before starting an item: a broken environment, not a hostile completion
                code = w.proc.exitcode
                self.close()
                raise RuntimeError(
                    f"a reward worker process died before scoring anything (exit code {code}); see its traceback "
                    "above. A script that scores rewards must guard its entry point with "
                    "`if __name__ == '__main__':` (workers are started with forkserver/spawn)")
            self._replace(w)
            culprit, bad_rid = chunk.items[j], chunk.rids[r]
            record(culprit, bad_rid, (0.0 if why == TIMEOUT else "worker process died", why, elapsed))
            rest = [rid for rid in chunk.rids if rid != bad_rid]
            if rest:
                queue.appendleft(_Chunk([culprit], rest))
            for item in chunk.items:
                if item != culprit:
                    queue.appendleft(_Chunk([item], list(chunk.rids)))

        while queue or busy:
            for w in self.workers:
                if w.chunk is None and queue:
                    chunk = queue.popleft()
                    w.chunk, w.chunk_id, w.sent_at = chunk, self._next_chunk, time.monotonic()
                    self._next_chunk += 1
                    sub = {k: [v[i] for i in chunk.items] for k, v in cols.items()}
                    try:
                        w.conn.send((w.chunk_id, chunk.rids, [texts[i] for i in chunk.items], sub))
                    except (BrokenPipeError, OSError):
                        pass  # found dead below
                    busy[w.chunk_id] = w
            ready = set(wait([w.conn for w in busy.values()] + [w.proc.sentinel for w in busy.values()],
                             timeout=0.05))
            now = time.monotonic()
            for cid, w in list(busy.items()):
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        got_id, out, extra = w.conn.recv()
                    except (EOFError, OSError):
                        del busy[cid]
                        salvage(w, ERROR, now - w.current()[2] if w.current()[0] >= 0 else 0.0)
                        continue
                    assert got_id == cid, (got_id, cid)
                    for r, rid in enumerate(w.chunk.rids):
                        for j, item in enumerate(w.chunk.items):
                            record(item, rid, out[r][j])
                        for key, v in extra[r].items():
                            acc = self.last_metrics[pos_of[rid]]
                            acc[key] = acc.get(key, 0.0) + v
                    w.chunk = None
                    del busy[cid]
                    continue
                j, r, t0 = w.current()
                stuck = j >= 0 and now - t0 > hard_limit[w.chunk.rids[r]]
                if stuck or (j < 0 and now - w.sent_at > _STARTUP_LIMIT_S):
                    del busy[cid]
                    salvage(w, TIMEOUT, now - t0 if j >= 0 else 0.0)
        return values, status, seconds

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self.workers:
            w.proc.join(timeout=2)
            w.kill()
        self.workers = []
