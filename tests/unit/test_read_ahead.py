"""``_read_ahead``: a PostgreSQL stream's batches fetched a batch or two ahead in a thread of their own,
in order, bounded, with the fetcher's error raised to the reader and an early stop closing the fetch."""

from __future__ import annotations

import threading
import time

import pytest

from app.sources.base import _read_ahead


def test_read_ahead_yields_every_batch_in_order_and_stays_bounded():
    made: list[int] = []

    def batches():
        for i in range(50):
            made.append(i)
            yield [(i,)]

    seen = []
    for batch in _read_ahead(batches, depth=2):
        time.sleep(0.001)
        assert len(made) - len(seen) <= 4  # depth in the queue, one being put, one being read
        seen.append(batch[0][0])
    assert seen == list(range(50))


def test_read_ahead_raises_the_fetchers_error_to_the_reader():
    class Boom(Exception):
        pass

    def batches():
        yield [(1,)]
        raise Boom("the server went away")

    reader = _read_ahead(batches)
    assert next(reader) == [(1,)]
    with pytest.raises(Boom):
        next(reader)


def test_read_ahead_stopped_early_closes_the_fetch_and_ends_its_thread():
    closed = threading.Event()

    def batches():
        try:
            i = 0
            while True:
                i += 1
                yield [(i,)]
        finally:
            closed.set()

    before = threading.active_count()
    reader = _read_ahead(batches)
    assert next(reader) == [(1,)]
    reader.close()
    assert closed.wait(2) and threading.active_count() == before
