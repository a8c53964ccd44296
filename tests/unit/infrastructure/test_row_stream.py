"""The data source's row stream without a database: prefetching, the end of the rows, the whole-stream deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from application.errors import ReportTimedOut
from application.ports import Row
from infrastructure.persistence.data_source import Fetch, PrefetchingRowStream, _until_short


def fetching(batches: list[Sequence[Row]], calls: list[int]) -> Fetch:
    async def fetch() -> Sequence[Row]:
        calls.append(len(calls) + 1)
        return batches.pop(0) if batches else []

    return fetch


def a_stream(fetch: Fetch, *, seconds: float = 10) -> PrefetchingRowStream:
    return PrefetchingRowStream(["n"], None, fetch, asyncio.get_running_loop().time() + seconds)


async def test_a_short_batch_ends_the_rows_without_another_fetch() -> None:
    calls: list[int] = []
    stream = a_stream(_until_short(fetching([[(1,), (2,), (3,)], [(4,)]], calls), batch_size=3))

    received = [list(batch) async for batch in stream.batches()]
    await stream.close()

    assert received == [[(1,), (2,), (3,)], [(4,)]]
    assert calls == [1, 2]


async def test_a_full_last_batch_takes_one_empty_fetch_to_end() -> None:
    calls: list[int] = []
    stream = a_stream(_until_short(fetching([[(1,), (2,)]], calls), batch_size=2))

    received = [list(batch) async for batch in stream.batches()]
    await stream.close()

    assert received == [[(1,), (2,)]]
    assert calls == [1, 2]


async def test_a_consumer_slower_than_the_deadline_times_out_although_every_fetch_was_quick() -> None:
    stream = a_stream(fetching([[(n,)] for n in range(100)], []), seconds=0.2)

    async def consume_slowly() -> None:
        async for _batch in stream.batches():
            await asyncio.sleep(0.05)

    with pytest.raises(ReportTimedOut):
        await consume_slowly()
    await stream.close()
