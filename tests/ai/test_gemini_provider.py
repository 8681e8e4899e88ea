"""The Gemini provider: the REAL google-genai SDK against the fake Gemini server."""

from __future__ import annotations

import json
from contextlib import aclosing

import pytest
import trio

from server.ai.gemini import GeminiProvider
from server.ai.retry import RetryPolicy
from server.errors import ModelError
from tests.ai.conftest import FAST_RETRY, gemini_settings
from tests.ai.fake_gemini import (
    FakeGemini,
    error_reply,
    hang_reply,
    json_reply,
    text_reply,
)

SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}}


async def collect(provider: GeminiProvider, into: list[str]) -> None:
    async with aclosing(provider.stream_text(system="s", prompt="p")) as stream:
        async for chunk in stream:
            into.append(chunk)


async def test_generate_json_sends_structured_output_request(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script(json_reply({"answer": 42}))

    value = await gemini.generate_json(system="be terse", prompt="six times seven", schema=SCHEMA)

    assert value == {"answer": 42}
    [request] = fake_gemini.requests
    assert request.path == "/v1beta/models/gemini-test:generateContent"
    assert request.headers["x-goog-api-key"] == "test-key"
    config = request.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    assert request.body["systemInstruction"]["parts"][0]["text"] == "be terse"
    assert request.prompt_text == "six times seven"


async def test_answer_that_is_not_json_is_invalid_output(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script(text_reply("sure, here is your plan"))
    with pytest.raises(ModelError) as caught:
        await gemini.generate_json(system="s", prompt="p", schema=SCHEMA)
    assert caught.value.code == "model_invalid_output"
    assert not caught.value.retryable


async def test_stream_text_yields_chunks_as_sent(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script(text_reply("Hel", "lo, ", "world"))

    async with aclosing(gemini.stream_text(system=None, prompt="greet")) as stream:
        chunks = [chunk async for chunk in stream]

    assert chunks == ["Hel", "lo, ", "world"]
    [request] = fake_gemini.requests
    assert request.path == "/v1beta/models/gemini-test:streamGenerateContent"
    assert request.query["alt"] == ["sse"]


async def test_429_then_success_is_retried(gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    fake_gemini.script(error_reply(429, "quota", retry_after="0"), json_reply({"answer": 1}))

    assert await gemini.generate_json(system="s", prompt="p", schema=SCHEMA) == {"answer": 1}
    assert len(fake_gemini.requests) == 2


async def test_503_on_every_attempt_gives_up_after_the_policy(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script(*[error_reply(503, "overloaded")] * 3, json_reply({"answer": 1}))

    with pytest.raises(ModelError) as caught:
        await gemini.generate_json(system="s", prompt="p", schema=SCHEMA)

    assert caught.value.code == "model_unavailable"
    assert caught.value.retryable
    assert len(fake_gemini.requests) == FAST_RETRY.attempts


async def test_retry_after_beyond_the_deadline_is_honoured_not_shortened(
    fake_gemini: FakeGemini,
) -> None:
    """A Retry-After longer than the call's time budget is not cut short by a retry:
    the error surfaces with retry_after so the executor waits that long."""
    provider = GeminiProvider(gemini_settings(fake_gemini, ai_timeout_s=5.0), retry=FAST_RETRY)
    fake_gemini.script(error_reply(429, "slow down", retry_after="30"), json_reply({}))
    try:
        with pytest.raises(ModelError) as caught:
            await provider.generate_json(system="s", prompt="p", schema=SCHEMA)
    finally:
        await provider.aclose()
    assert caught.value.code == "model_rate_limited"
    assert caught.value.retry_after == 30.0
    assert caught.value.retryable
    assert len(fake_gemini.requests) == 1


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (400, "model_bad_request", "Request contains an invalid argument"),
        (401, "model_unauthorized", "STRETTO_GEMINI_API_KEY"),
        (403, "model_unauthorized", "STRETTO_GEMINI_API_KEY"),
        (404, "model_not_found", "gemini-test"),
    ],
)
async def test_permanent_errors_are_not_retried(
    gemini: GeminiProvider, fake_gemini: FakeGemini, status: int, code: str, hint: str
) -> None:
    fake_gemini.script(error_reply(status, "Request contains an invalid argument."))

    with pytest.raises(ModelError) as caught:
        await gemini.generate_json(system="s", prompt="p", schema=SCHEMA)

    assert caught.value.code == code
    assert not caught.value.retryable
    assert caught.value.status == status
    assert hint in caught.value.message
    assert len(fake_gemini.requests) == 1


async def test_hung_response_is_cut_by_the_timeout(fake_gemini: FakeGemini) -> None:
    provider = GeminiProvider(
        gemini_settings(fake_gemini, ai_timeout_s=0.3), retry=RetryPolicy(attempts=1)
    )
    fake_gemini.script(hang_reply())
    try:
        with pytest.raises(ModelError) as caught:
            await provider.generate_json(system="s", prompt="p", schema=SCHEMA)
    finally:
        await provider.aclose()
    assert caught.value.code == "model_timeout"
    assert caught.value.retryable
    with trio.fail_after(5):
        await fake_gemini.disconnected.wait()  # the HTTP request was really closed


async def test_hung_stream_is_cut_by_the_timeout(fake_gemini: FakeGemini) -> None:
    provider = GeminiProvider(
        gemini_settings(fake_gemini, ai_timeout_s=0.3), retry=RetryPolicy(attempts=1)
    )
    fake_gemini.script(text_reply("partial", hold_open=True))
    chunks: list[str] = []
    try:
        with pytest.raises(ModelError) as caught:
            await collect(provider, chunks)
    finally:
        await provider.aclose()
    assert chunks == ["partial"]
    assert caught.value.code == "model_timeout"
    with trio.fail_after(5):
        await fake_gemini.disconnected.wait()


async def test_cancelling_a_stream_closes_the_http_request(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script(text_reply("first chunk", hold_open=True))
    chunks: list[str] = []

    with trio.CancelScope() as scope:
        async with aclosing(gemini.stream_text(system=None, prompt="long story")) as stream:
            async for chunk in stream:
                chunks.append(chunk)
                scope.cancel()  # the run was cancelled while the model was streaming

    assert scope.cancelled_caught
    assert chunks == ["first chunk"]
    with trio.fail_after(5):
        await fake_gemini.disconnected.wait()
    assert fake_gemini.disconnects == 1


async def test_error_status_in_stream_maps_like_a_call(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script(error_reply(403, "API key not valid."))
    with pytest.raises(ModelError) as caught:
        await collect(gemini, [])
    assert caught.value.code == "model_unauthorized"


async def test_one_client_serves_concurrent_calls(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script(*[json_reply({"answer": i}) for i in range(5)])
    results: list[int] = []

    async def call() -> None:
        value = await gemini.generate_json(system="s", prompt="p", schema=SCHEMA)
        results.append(value["answer"])

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(call)
    assert sorted(results) == [0, 1, 2, 3, 4]


def test_request_bodies_are_json_serialisable_records() -> None:
    """Sanity check of the fake's recording (used by every test above)."""
    body = {"contents": [{"parts": [{"text": "a"}, {"text": "b"}], "role": "user"}]}
    from tests.ai.fake_gemini import Received

    received = Received("POST", "/v1beta/models/m:generateContent", {}, {}, body)
    assert received.prompt_text == "a\nb"
    assert received.model == "m"
    assert json.loads(json.dumps(received.body)) == body
