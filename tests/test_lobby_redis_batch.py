"""signaling.redis_backend.node.ScriptBatch against a real redis-server: the script calls made
in one event-loop iteration go as one pipeline, and each still gets its own reply or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import unique_prefix
from redis.exceptions import RedisError, ResponseError

from signaling.redis_backend.node import ScriptBatch

pytestmark = pytest.mark.timeout(60)

ECHO = """
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
redis.call('RPUSH', KEYS[1], ARGV[1])
return {tonumber(ARGV[2]), ARGV[1]}
"""


@pytest.fixture
async def client(redis_factory: Any) -> Any:
    redis = aioredis.Redis.from_url(redis_factory().url, decode_responses=True)
    yield redis
    await redis.aclose()


async def test_calls_of_one_iteration_go_in_one_pipeline_with_their_own_replies(
        client: Any) -> None:
    key = unique_prefix() + "log"
    batch = ScriptBatch(client, client.register_script(ECHO))
    await client.script_load(ECHO)
    await client.config_resetstat()
    futures = [batch([key], [f"m{i}", i]) for i in range(50)]
    futures.insert(25, batch([key], ["fail", 0]))
    replies = await asyncio.gather(*futures, return_exceptions=True)
    errors = [r for r in replies if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], ResponseError)
    assert "asked to fail" in str(errors[0])
    assert [r for r in replies if not isinstance(r, BaseException)] == [
        [i, f"m{i}"] for i in range(50)]
    assert await client.lrange(key, 0, -1) == [f"m{i}" for i in range(50)]  # in call order
    assert (await client.info("commandstats"))["cmdstat_evalsha"]["calls"] == 51
    # One pipeline on one connection: 51 concurrent EVALSHAs of their own would each have
    # taken a pooled connection of their own.
    assert (await client.info("clients"))["connected_clients"] == 1


async def test_a_flushed_script_is_loaded_again(client: Any) -> None:
    key = unique_prefix() + "log"
    batch = ScriptBatch(client, client.register_script(ECHO))
    assert await batch([key], ["a", 1]) == [1, "a"]
    await client.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    assert await asyncio.gather(batch([key], ["b", 2]), batch([key], ["c", 3])) == [
        [2, "b"], [3, "c"]]
    assert await client.lrange(key, 0, -1) == ["a", "b", "c"]


async def test_an_unreachable_redis_fails_every_call_of_the_batch() -> None:
    from conftest import free_port

    redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0",
                                    socket_connect_timeout=1)
    batch = ScriptBatch(redis, redis.register_script(ECHO))
    replies = await asyncio.gather(batch(["k"], ["a", 1]), batch(["k"], ["b", 2]),
                                   return_exceptions=True)
    assert all(isinstance(r, (RedisError, OSError)) for r in replies), replies
    await redis.aclose()
