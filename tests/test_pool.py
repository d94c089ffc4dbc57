"""streaming.Pool, the pump threads of a view, on its own: no kernel, no mount."""

import threading
import time

import pytest

from iterfs.streaming import Pool

IDLE = 0.2


def named(prefix):
    return [t for t in threading.enumerate() if t.name.startswith(prefix + "_")]


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.01)


def test_threads_start_as_work_comes_and_end_when_idle():
    pool = Pool(3, "pool-burst", idle=IDLE)
    release = threading.Event()
    futures = [pool.submit(release.wait) for _ in range(5)]
    wait_for(lambda: sum(f.running() for f in futures) == 3)
    assert pool.threads == 3 == len(named("pool-burst"))   # never above its bound
    release.set()
    assert [f.result(timeout=5) for f in futures] == [True] * 5
    wait_for(lambda: pool.threads == 0 and not named("pool-burst"))
    assert pool.submit(lambda x: x * 2, 21).result(timeout=5) == 42     # and starts again


def test_a_waiting_thread_is_reused():
    pool = Pool(4, "pool-reuse", idle=5.0)
    for n in range(20):
        assert pool.submit(lambda n=n: n).result(timeout=5) == n
    assert pool.threads == 1 == len(named("pool-reuse"))
    pool.shutdown()
    wait_for(lambda: not named("pool-reuse"))


def test_errors_reach_the_future():
    pool = Pool(1, "pool-error", idle=IDLE)
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=5)
    assert pool.submit(lambda: "after").result(timeout=5) == "after"


def test_shutdown_cancels_what_waits_and_never_waits():
    pool = Pool(1, "pool-stop", idle=IDLE)
    release = threading.Event()
    running = pool.submit(release.wait)
    waiting = pool.submit(lambda: "never")
    wait_for(running.running)
    started = time.monotonic()
    pool.shutdown(wait=False, cancel_futures=True)
    assert time.monotonic() - started < 0.5
    assert waiting.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    release.set()
    assert running.result(timeout=5) is True
    wait_for(lambda: not named("pool-stop"))


def test_the_initializer_runs_in_each_thread():
    seen = []
    pool = Pool(2, "pool-init", initializer=lambda: seen.append(threading.get_ident()),
                idle=IDLE)
    release = threading.Event()
    futures = [pool.submit(lambda: (release.wait(), threading.get_ident())[1]) for _ in range(2)]
    wait_for(lambda: all(f.running() for f in futures))
    release.set()
    assert sorted(seen) == sorted(f.result(timeout=5) for f in futures)
