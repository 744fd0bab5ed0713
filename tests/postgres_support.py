"""The machine's PostgreSQL for the tests (trust auth, database `test`): its address and one
query at a time, from a test's own thread."""

from __future__ import annotations

import asyncio
import os

import asyncpg

DSN = os.environ.get("WARDEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def sql(query: str, *args):
    async def run():
        conn = await asyncpg.connect(DSN)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()
    return asyncio.run(run())
