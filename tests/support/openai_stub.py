"""A local OpenAI-compatible chat server for tests and benchmarks (no model, no network).

Answers are deterministic functions of the prompt: a choice among ``structured_outputs.choice`` picked by
a hash of the prompt (or, when ``ignore_constraints`` is set, free text, as a server that does not know
the field would answer), and for free-text prompts a refusal or a compliant answer. It can add a fixed
latency, fail the first requests with 429 or 500, and refuse over-long prompts with vLLM's 400 message.
Runs its asyncio loop in a background thread (``with StubServer() as server: server.base_url``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11


@dataclass
class StubConfig:
    model: str = "stub-model"
    latency: float = 0.0
    ignore_constraints: bool = False
    fail_first: int = 0
    fail_status: int = 429
    max_prompt_chars: int = 0  # 0: no limit
    seen: list[dict] = field(default_factory=list)
    record: bool = False
    #: Answers a request body (e.g. an :class:`tests.support.oracle.Oracle` that knows the gold answers).
    responder: Callable[[dict], str] | None = None
    #: Answer every chat request with this raw body and status 200 (a server that is not OpenAI-compatible).
    garbage: bytes | None = None
    #: Answer every chat request with this status (an endpoint that is down behind its proxy).
    always_status: int = 0


def answer_for(body: dict, config: StubConfig) -> str:
    content = json.dumps(body.get("messages"), ensure_ascii=False, sort_keys=True)
    draw = int(hashlib.sha256(content.encode()).hexdigest()[:8], 16)
    choices = (body.get("structured_outputs") or {}).get("choice")
    if choices and not config.ignore_constraints:
        return choices[draw % len(choices)]
    if choices:
        return "banana" if "banana" in content else "The answer is probably the second option."
    if draw % 3 == 0:
        return "I'm sorry, but I can't help with that request."
    return "Here is some general, factual information that answers your question."


class StubServer:
    def __init__(self, config: StubConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or StubConfig()
        self.host, self.port = host, port
        self.requests = 0
        #: server-side in-run rate: chat requests / (last answer - first arrival), the same yardstick for every client
        self.first_arrival: float | None = None
        self.last_answer: float | None = None
        self.answered = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openai-stub", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> StubServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            # connections still open (a client that kept its keep-alive) end here, inside the loop, so no
            # coroutine is left to be destroyed pending (an "unraisable" warning in a later test)
            pending = [task for task in asyncio.all_tasks(self._loop) if not task.done()]
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read(connection, reader)
                if request is None:
                    break
                status, payload = await self._handle(request, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
                writer.write(connection.send(h11.Response(status_code=status, headers=headers)))
                writer.write(connection.send(h11.Data(data=data)))
                writer.write(connection.send(h11.EndOfMessage()))
                await writer.drain()
                if connection.our_state is h11.MUST_CLOSE:
                    break
                connection.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError):
            pass
        finally:
            writer.close()

    async def _read(self, connection: h11.Connection, reader: asyncio.StreamReader):
        request, chunks = None, []
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                connection.receive_data(data)
                if not data and request is None:
                    return None, b""
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return request, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _handle(self, request: h11.Request, body: bytes) -> tuple[int, dict]:
        target = request.target.decode()
        if request.method == b"GET" and target.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": self.config.model, "object": "model", "root": "stub",
                                                     "owned_by": "tests", "max_model_len": 4096}]}
        if target.endswith("/stats"):  # benchmarks: GET reads the in-run rate, POST resets it
            if request.method == b"POST":
                self.first_arrival, self.last_answer, self.answered = None, None, 0
            span = (self.last_answer - self.first_arrival) if self.first_arrival and self.last_answer else 0.0
            return 200, {"answered": self.answered, "span_seconds": span,
                         "items_per_second": self.answered / span if span else 0.0}
        if request.method != b"POST" or not target.endswith("/chat/completions"):
            return 404, {"error": {"message": f"no route {target}"}}
        self.requests += 1
        if self.config.always_status:
            return self.config.always_status, {"error": {"message": "internal details the audit must not show"}}
        if self.config.garbage is not None:
            return 200, self.config.garbage
        payload = json.loads(body or b"{}")
        counted = "banana" not in json.dumps(payload.get("messages"))  # the backend's self-test is not an item
        if counted and self.first_arrival is None:
            self.first_arrival = time.perf_counter()
        if self.config.record:
            self.config.seen.append(payload)
        if self.config.latency:
            await asyncio.sleep(self.config.latency)
        if self.requests <= self.config.fail_first:
            return self.config.fail_status, {"error": {"message": "try again"}}
        if payload.get("model") != self.config.model:
            return 404, {"error": {"message": f"The model `{payload.get('model')}` does not exist."}}
        prompt = json.dumps(payload.get("messages"), ensure_ascii=False)
        if self.config.max_prompt_chars and len(prompt) > self.config.max_prompt_chars:
            return 400, {"error": {"message": "This model's maximum context length is 4096 tokens. However, you "
                                              f"requested {len(prompt)} tokens."}}
        text = self.config.responder(payload) if self.config.responder else answer_for(payload, self.config)
        choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if payload.get("logprobs"):
            choice["logprobs"] = {"content": [{"token": text[:1], "logprob": -0.1,
                                               "top_logprobs": [{"token": text[:1], "logprob": -0.1},
                                                                {"token": "Z", "logprob": -3.2}]}]}
        if counted:
            self.last_answer, self.answered = time.perf_counter(), self.answered + 1
        return 200, {"id": f"chatcmpl-{self.requests}", "object": "chat.completion", "model": self.config.model,
                     "choices": [choice],
                     "usage": {"prompt_tokens": len(prompt) // 3, "completion_tokens": max(1, len(text) // 3),
                               "total_tokens": len(prompt) // 3 + max(1, len(text) // 3)}}


if __name__ == "__main__":  # python -m tests.support.openai_stub --port 8000 --latency 0.05
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--model", default="stub-model")
    arguments = parser.parse_args()
    with StubServer(StubConfig(model=arguments.model, latency=arguments.latency), port=arguments.port) as stub:
        print(f"serving {stub.base_url}", flush=True)
        threading.Event().wait()
