"""The driver workload through asyncpg (tests/drivers/README.md).

--path stmt-cache     asyncpg's default statement cache: named prepared statements (__asyncpg_stmt_N__)
--path no-stmt-cache  statement_cache_size=0: the unnamed statement, prepared again for every call

asyncpg always speaks the extended protocol (Parse/Describe/Flush, then Bind/Execute/Sync).
executemany is its pipelined batch (one Sync for all rows); it has no API for a read and a write
in one Sync, so this workload has no pipe_* steps."""
import asyncio
import os
import sys

import asyncpg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (BUMP, FETCHVAL, INSERT, LOG_INSERT, LOG_READ, LOG_ROWS, PARAM, PLAIN, QTY, RANGE,  # noqa: E402
                    REF, STEP_TIMEOUT, args, emit, fail)


async def main():
    a = args(["stmt-cache", "no-stmt-cache"])
    label = "connect"

    async def step(name, coro):
        nonlocal label
        label = name
        try:
            return await asyncio.wait_for(coro, STEP_TIMEOUT)
        except asyncio.TimeoutError:
            fail(name, TimeoutError(f"no answer within {STEP_TIMEOUT} s"))
        except Exception as e:
            fail(name, e)

    kw = {} if a.path == "stmt-cache" else {"statement_cache_size": 0}
    conn = await step("connect", asyncpg.connect(host=a.host, port=a.port, user=a.user, password=a.password,
                                                 database=a.dbname, ssl=False, timeout=STEP_TIMEOUT,
                                                 command_timeout=STEP_TIMEOUT, **kw))

    def rows(records):
        return [tuple(r) for r in records]

    emit("plain", rows(await step("plain", conn.fetch(PLAIN))))
    emit("plain_again", rows(await step("plain_again", conn.fetch(PLAIN))))
    for name in ("ref", "ref_2", "ref_3"):
        emit(name, rows(await step(name, conn.fetch(REF, 2))))
    emit("param", rows(await step("param", conn.fetch(PARAM, 3))))
    emit("range", rows(await step("range", conn.fetch(RANGE, 25))))
    emit("fetchval", [(await step("fetchval", conn.fetchval(FETCHVAL, 41)),)])

    await step("ryw", conn.execute(INSERT, 101, "new", 7))
    emit("ryw", rows(await step("ryw", conn.fetch(PARAM, 101))))

    emit("stale_before", [(await step("stale", conn.fetchval(QTY, 2)),)])
    emit("stale_before_2", [(await step("stale", conn.fetchval(QTY, 2)),)])
    await step("stale", conn.execute(BUMP, 1, 2))
    emit("stale_after", [(await step("stale", conn.fetchval(QTY, 2)),)])

    async def tx():
        async with conn.transaction():
            await conn.execute(BUMP, 5, 1)
            return await conn.fetchval(QTY, 1)
    emit("tx_inside", [(await step("tx", tx()),)])
    emit("tx_after", [(await step("tx", conn.fetchval(QTY, 1)),)])

    await step("batch", conn.executemany(LOG_INSERT, LOG_ROWS))
    emit("batch_after", rows(await step("batch", conn.fetch(LOG_READ))))

    emit("final", rows(await step("final", conn.fetch(PLAIN))))
    await step("close", conn.close(timeout=STEP_TIMEOUT))


if __name__ == "__main__":
    asyncio.run(main())
