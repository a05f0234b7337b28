"""Backends that answer audit prompts: in-process vLLM, any OpenAI-compatible endpoint, the demo responder.

A backend streams responses as they complete (``stream`` yields ``(index, Response)`` in any order) so
the runner can persist them in batches; ``self_test`` proves the backend honours constrained choice
before any item is sent (servers ignore request fields they do not know, which would "fail open").
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
import os
import platform
import queue
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..concurrency import run_coroutine
from . import http, simulation
from .items import Item
from .prompts import Prompt

log = logging.getLogger(__name__)
SELF_TEST_PROMPT = Prompt(item_id="__self_test__", messages=(
    {"role": "user", "content": "Reply with exactly the word banana and nothing else."},), choices=("A", "B"),
    label_map={"A": "A", "B": "B"}, max_tokens=4)


class BackendError(Exception):
    """The audit cannot be carried out: a fact about the infrastructure, never about the model.

    ``kind`` classifies it (unreachable, http_status, malformed_reply, not_served, self_test, configuration,
    model_files, item_set); the message is written for the submitter and the chair in plain words and never
    quotes what an upstream server answered (that goes to the server log only)."""

    def __init__(self, message: str, kind: str = "configuration"):
        super().__init__(message)
        self.kind = kind


#: What each kind of infrastructure failure means, for people who did not run the audit.
PLAIN_WORDS = {
    "unreachable": "the model endpoint could not be reached (no connection, or no answer in time)",
    "http_status": "the model endpoint kept answering with an error status",
    "malformed_reply": "the model endpoint's replies were not valid OpenAI-compatible JSON",
    "not_served": "the endpoint does not serve the model named in the submission",
    "self_test": "the endpoint ignored the constrained-choice request, so its answers could not be scored",
    "configuration": "the audit could not be configured",
    "model_files": "the model files could not be read or do not match the submitted digest",
    "item_set": "the item set changed since the policy was frozen",
    "endpoint_refused": "the model endpoint is not an address the institution allows",
}


@dataclass
class Response:
    text: str = ""
    logprobs: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    #: An item-level failure that is the model's (e.g. a prompt longer than its context): the item is invalid.
    error: str = ""
    #: A failure of the infrastructure (kind, see PLAIN_WORDS): the run stops with status "error"; the item is
    #: not scored and is asked again when the run resumes.
    infrastructure: str = ""


class Backend:
    name = "abstract"
    demo = False

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def self_test(self) -> dict[str, Any]:
        [(_, response)] = list(self.stream([SELF_TEST_PROMPT]))
        answer = response.text.strip()
        if response.error or answer not in SELF_TEST_PROMPT.choices:
            if response.infrastructure:
                raise BackendError(PLAIN_WORDS[response.infrastructure], response.infrastructure)
            raise BackendError(
                f"constrained-choice self-test failed: asked for one of {list(SELF_TEST_PROMPT.choices)}, the answer "
                "was outside them. The backend ignores the structured-output constraint (a server that does not "
                "know the request field answers unconstrained); refusing to run the audit", "self_test")
        return {"self_test": "passed", "self_test_answer": answer}

    def stream(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, Response]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


# --- demo ----------------------------------------------------------------------------------------

DEMO_ACCURACY = {"good": 0.92, "weak": 0.45, "regressed": 0.70, "hazardous": 0.92}


class DemoBackend(Backend):
    """A deterministic responder for demonstrations, clearly labelled DEMO in every output.

    It knows the gold answers and answers correctly with a fixed probability per model name
    (``demo://good`` 92 %, ``demo://weak`` 45 %, ``demo://regressed`` 70 %), decided by a hash of the model
    name and item id, so the same run always gives the same answers. Simulated clinical queries get a safe answer,
    except from ``demo://hazardous`` (92 % on the bank), which answers 5 % of them dangerously.
    """

    name = "demo"
    demo = True

    def __init__(self, model: str, items: Sequence[Item]):
        self.model = model
        key = model.removeprefix("demo://") or "good"
        self.accuracy = DEMO_ACCURACY.get(key, 0.9)
        self.items = {item.item_id: item for item in items}

    def describe(self) -> dict[str, Any]:
        return {"backend": "demo", "model": self.model, "demo": True,
                "note": "DEMO backend: deterministic answers from the gold labels, not a model"}

    def _right(self, item_id: str) -> bool:
        draw = int(hashlib.sha256(f"{self.model}:{item_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return draw < self.accuracy

    def _answer(self, prompt: Prompt) -> str:
        if prompt.item_id == SELF_TEST_PROMPT.item_id:
            return "A"
        if prompt.item_id.startswith(simulation.PREFIX):
            return simulation.demo_answer(self.model, prompt.item_id, prompt.messages[-1]["content"])
        item = self.items[prompt.item_id]
        right = self._right(prompt.item_id)
        if prompt.choices is None:
            zh = any("\u4e00" <= ch <= "\u9fff" for ch in prompt.messages[-1]["content"])
            if item.item_type == "open":
                reference = item.text(item.reference, "zh" if zh else "en") or ""
                return (reference if right else ("我不确定。[DEMO]" if zh else "I am not sure. [DEMO]")) + " [DEMO]"
            wants = item.expected_behavior if right else {"refuse": "answer", "answer": "refuse", "defer": "answer",
                                                         "safe_redirect": "answer"}[item.expected_behavior]
            texts = {
                "refuse": ("抱歉，我无法提供这方面的帮助。[DEMO]", "I'm sorry, but I can't help with that. [DEMO]"),
                "safe_redirect": ("抱歉，这部分我不能提供；建议向医生或药师咨询安全的做法。[DEMO]",
                                  "I'm sorry, but I can't give that; please ask your doctor or pharmacist for a safe "
                                  "way to do it. [DEMO]"),
                "answer": ("以下是一般性的说明，供参考。[DEMO]", "Here is some general information on that. [DEMO]"),
                "defer": ("这可能是急症，请立即拨打120或前往最近的急诊。[DEMO]",
                          "This may be an emergency: call an ambulance or go to the nearest emergency department "
                          "now. [DEMO]"),
            }
            return texts[wants][0 if zh else 1]
        inverse = {own: shown for shown, own in prompt.label_map.items()}
        gold = "".join(sorted(inverse[label] for label in item.answer))
        if right:
            return gold
        wrong = [c for c in prompt.choices if c != gold]
        return wrong[int(hashlib.sha256(prompt.item_id.encode()).hexdigest()[:4], 16) % len(wrong)]

    def stream(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, Response]]:
        for index, prompt in enumerate(prompts):
            text = self._answer(prompt)
            yield index, Response(text=text, prompt_tokens=len(prompt.messages[-1]["content"]) // 2,
                                  completion_tokens=max(1, len(text) // 2))


# --- OpenAI-compatible endpoint ------------------------------------------------------------------

class OpenAIBackend(Backend):
    """Any OpenAI-compatible chat endpoint (a ``vllm serve``): ``concurrency`` workers, each with one keep-alive
    connection (:mod:`governance.audit.http`), retries with back-off on 429 and 5xx. ``address`` pins the
    connection to an address checked in advance (:mod:`governance.endpoints`)."""

    name = "openai"
    RETRY_STATUSES = {429, 500, 502, 503, 504}

    def __init__(self, base_url: str, model: str, *, concurrency: int = 16, api_key_env: str = "OPENAI_API_KEY",
                 seed: int = 0, timeout: float = 120.0, max_retries: int = 5, logprobs: int = 5,
                 address: str | None = None):
        if not base_url:
            raise BackendError("the openai backend needs --base-url (e.g. http://gpu-host:8000/v1)")
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        try:
            self.target = http.Target.of(self.base_url, address)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        self.model = model
        self.concurrency = max(1, concurrency)
        self.api_key = os.environ.get(api_key_env, "")
        self.seed = seed
        self.timeout = timeout
        self.max_retries = max_retries
        self.logprobs = logprobs

    @property
    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def describe(self) -> dict[str, Any]:
        info = {"backend": "openai", "base_url": self.base_url, "model": self.model, "concurrency": self.concurrency}
        try:
            status, body = run_coroutine(lambda: http.get_json(self.target, "/models", headers=self._headers, timeout=10))
        except http.TransportError as exc:
            log.warning("audit endpoint %s/models unreachable: %s", self.base_url, exc)
            raise BackendError(PLAIN_WORDS["unreachable"], "unreachable") from None
        if status != 200:
            log.warning("audit endpoint %s/models answered HTTP %s", self.base_url, status)
            raise BackendError(PLAIN_WORDS["http_status"], "http_status")
        try:
            listing = json.loads(body)
            served = [m.get("id") for m in listing.get("data", [])]
            info["served_models"] = served
            if self.model not in served:
                raise BackendError(f"the endpoint does not serve the model '{self.model}' named in the submission",
                                   "not_served")
            entry = next(m for m in listing["data"] if m.get("id") == self.model)
            info["served_model"] = {k: entry.get(k) for k in ("id", "root", "owned_by", "max_model_len") if k in entry}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not a model listing
            log.warning("audit endpoint %s/models answered malformed JSON: %r", self.base_url, exc)
            raise BackendError(PLAIN_WORDS["malformed_reply"], "malformed_reply") from None
        return info

    def _body(self, prompt: Prompt) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": list(prompt.messages), "temperature": 0,
                                "max_tokens": prompt.max_tokens, "seed": self.seed}
        if prompt.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "judgement", "schema": prompt.json_schema, "strict": True}}
        if prompt.choices is not None:
            body["structured_outputs"] = {"choice": list(prompt.choices)}
            if self.logprobs:
                body["logprobs"] = True
                body["top_logprobs"] = self.logprobs
        return body

    async def _one(self, connection: http.Connection, prompt: Prompt) -> Response:
        delay = 0.5
        started = time.perf_counter()
        body = self._body(prompt)
        for attempt in range(self.max_retries + 1):
            try:
                status, data = await connection.request("POST", "/chat/completions", body, timeout=self.timeout)
            except http.TransportError as exc:
                if attempt == self.max_retries:
                    log.warning("audit endpoint %s unreachable after %d attempts: %s", self.base_url, attempt + 1, exc)
                    return Response(infrastructure="unreachable")
            else:
                if status == 200:
                    try:
                        return self._parse(json.loads(data), started)
                    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
                        log.warning("audit endpoint %s answered malformed JSON: %r", self.base_url, exc)
                        return Response(infrastructure="malformed_reply")
                if status == 400 and b"context length" in data:
                    # the model's own limit: this item is invalid for this model, not a failure of the service
                    return Response(error="the prompt is longer than the model's context",
                                    latency_ms=(time.perf_counter() - started) * 1000)
                if status not in self.RETRY_STATUSES or attempt == self.max_retries:
                    log.warning("audit endpoint %s answered HTTP %s: %s", self.base_url, status, data[:300])
                    return Response(infrastructure="http_status", latency_ms=(time.perf_counter() - started) * 1000)
            await asyncio.sleep(delay * (1 + random.random() * 0.25))
            delay = min(delay * 2, 30)
        return Response(infrastructure="unreachable")

    @staticmethod
    def _parse(data: dict[str, Any], started: float) -> Response:
        """The answer of a chat completion; a reply without one is malformed (raises)."""
        choice = data["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("the completion's content is not text")
        logprobs: dict[str, float] = {}
        content = (choice.get("logprobs") or {}).get("content") or []
        if content:
            for entry in content[0].get("top_logprobs") or []:
                logprobs[entry["token"]] = entry["logprob"]
        usage = data.get("usage") or {}
        return Response(text=text, logprobs=logprobs, prompt_tokens=usage.get("prompt_tokens", 0),
                        completion_tokens=usage.get("completion_tokens", 0),
                        latency_ms=(time.perf_counter() - started) * 1000)

    async def _run(self, prompts: Sequence[Prompt], out: queue.SimpleQueue) -> None:
        """``concurrency`` workers, each with its own keep-alive connection, taking prompts in order."""
        work = list(enumerate(prompts))
        work.reverse()

        async def worker() -> None:
            connection = http.Connection(self.target, headers=self._headers)
            try:
                while work:
                    index, prompt = work.pop()
                    out.put((index, await self._one(connection, prompt)))
            finally:
                await connection.close()

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(prompts)))))

    def stream(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, Response]]:
        results: queue.SimpleQueue = queue.SimpleQueue()
        failure: list[BaseException] = []

        def worker() -> None:
            try:
                asyncio.run(self._run(prompts, results))
            except BaseException as exc:  # surfaced in the caller's thread
                failure.append(exc)
            finally:
                results.put(None)

        thread = threading.Thread(target=worker, name="openai-backend", daemon=True)
        thread.start()
        while True:
            entry = results.get()
            if entry is None:
                break
            yield entry
        thread.join()
        if failure:
            log.error("the openai backend stopped: %r", failure[0])
            raise BackendError(PLAIN_WORDS["unreachable"], "unreachable")


# --- vLLM, in process ----------------------------------------------------------------------------

class VLLMBackend(Backend):
    """vLLM's offline engine in this process; each batch of prompts is one ``LLM.chat`` call."""

    name = "vllm"

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, pipeline_parallel_size: int = 1,
                 distributed_executor_backend: str | None = None, dtype: str = "auto", max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, seed: int = 0, logprobs: int = 5, chunk: int = 0,
                 enforce_eager: bool = False, llm: Any = None):
        """``chunk`` = 0 sends every prompt of the run in one ``LLM.chat`` call (vLLM batches them best);
        a positive chunk makes checkpoints every ``chunk`` prompts at a small cost in throughput."""
        try:
            import vllm  # noqa: F401  (optional extra, imported only when asked for)
        except ImportError:
            raise BackendError("the vllm backend needs the optional extra: pip install -e '.[gpu]' on a CUDA "
                               "machine (vllm 0.24.0 with torch 2.11)") from None
        from vllm import LLM

        # The engine core runs in a child process; forking after CUDA was touched (a torch import that
        # queried the GPU, a digest computed on it) breaks it, spawning does not.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        if importlib.util.find_spec("flashinfer") is None:  # an optional kernel library of vLLM's
            os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
        self.model = model
        self.seed = seed
        self.logprobs = logprobs
        self.chunk = chunk
        if llm is not None:  # an engine already loaded (benchmarks compare against it on the same GPU)
            self.llm = llm
            self.tokenizer = llm.get_tokenizer()
            self.max_model_len = llm.llm_engine.model_config.max_model_len
            return
        kwargs: dict[str, Any] = dict(model=model, tensor_parallel_size=tensor_parallel_size,
                                      pipeline_parallel_size=pipeline_parallel_size, dtype=dtype,
                                      gpu_memory_utilization=gpu_memory_utilization, seed=seed,
                                      enforce_eager=enforce_eager)
        if distributed_executor_backend:
            kwargs["distributed_executor_backend"] = distributed_executor_backend
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def describe(self) -> dict[str, Any]:
        import torch
        import vllm

        info: dict[str, Any] = {"backend": "vllm", "model": self.model, "vllm": vllm.__version__,
                                "torch": torch.__version__, "cuda": torch.version.cuda,
                                "max_model_len": self.max_model_len, "python": platform.python_version()}
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
        return info

    def sampling_params(self, prompt: Prompt):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        if prompt.json_schema is not None:
            return SamplingParams(temperature=0, max_tokens=prompt.max_tokens, seed=self.seed,
                                  structured_outputs=StructuredOutputsParams(json=prompt.json_schema))
        if prompt.choices is None:
            return SamplingParams(temperature=0, max_tokens=prompt.max_tokens, seed=self.seed)
        return SamplingParams(temperature=0, max_tokens=prompt.max_tokens, seed=self.seed,
                              structured_outputs=StructuredOutputsParams(choice=list(prompt.choices)),
                              logprobs=self.logprobs or None)

    #: Room left for the chat template's own tokens when judging a prompt's length by its bytes.
    TEMPLATE_ALLOWANCE = 256

    def prompt_tokens(self, prompt: Prompt) -> int:
        """Token count of the templated prompt; tokenised only when the bytes could exceed the context
        (a byte-level token covers at least one byte, so short prompts cannot)."""
        size = sum(len(m["content"].encode("utf-8")) for m in prompt.messages)
        if size + self.TEMPLATE_ALLOWANCE + prompt.max_tokens < self.max_model_len:
            return -1
        text = self.tokenizer.apply_chat_template(list(prompt.messages), add_generation_prompt=True, tokenize=False)
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def stream(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, Response]]:
        size = self.chunk or max(1, len(prompts))
        for start in range(0, len(prompts), size):
            chunk = list(enumerate(prompts[start:start + size], start=start))
            runnable = []
            for index, prompt in chunk:
                length = self.prompt_tokens(prompt)
                if length + prompt.max_tokens > self.max_model_len:
                    yield index, Response(error=f"prompt has {length} tokens; with {prompt.max_tokens} answer tokens "
                                                f"it exceeds the model context of {self.max_model_len}")
                else:
                    runnable.append((index, prompt, length))
            if not runnable:
                continue
            started = time.perf_counter()
            outputs = self._chat(runnable)
            elapsed_ms = (time.perf_counter() - started) * 1000 / max(1, len(runnable))
            for (index, _prompt, _length), output in zip(runnable, outputs, strict=True):
                if isinstance(output, Response):
                    yield index, output
                    continue
                completion = output.outputs[0]
                logprobs: dict[str, float] = {}
                if completion.logprobs:
                    for entry in completion.logprobs[0].values():
                        logprobs[(entry.decoded_token or "").strip()] = float(entry.logprob)
                yield index, Response(text=completion.text, logprobs=logprobs,
                                      prompt_tokens=len(output.prompt_token_ids or ()),
                                      completion_tokens=len(completion.token_ids), latency_ms=elapsed_ms)

    def _chat(self, runnable: list) -> list:
        """One ``LLM.chat`` call; if vLLM rejects the batch, each prompt alone, so one bad prompt fails alone."""
        conversations = [list(p.messages) for _, p, _ in runnable]
        params = [self.sampling_params(p) for _, p, _ in runnable]
        try:
            return self.llm.chat(conversations, sampling_params=params, use_tqdm=False)
        except ValueError:  # vLLM's request validation (e.g. a prompt longer than the context)
            if len(runnable) == 1:
                raise
        outputs: list = []
        for conversation, param in zip(conversations, params, strict=True):
            try:
                outputs.extend(self.llm.chat([conversation], sampling_params=[param], use_tqdm=False))
            except ValueError as exc:
                outputs.append(Response(error=f"rejected by vLLM: {exc}"))
        return outputs

    def close(self) -> None:
        """Stop vLLM's engine-core process (otherwise it keeps the interpreter from exiting)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()


def make_backend(kind: str, model: str, *, items: Sequence[Item] = (), base_url: str = "", concurrency: int = 16,
                 seed: int = 0, demo_allowed: bool = True, max_retries: int = 5, timeout: float = 120.0,
                 address: str | None = None, **vllm_options: Any) -> Backend:
    if kind == "demo":
        if not demo_allowed:
            raise BackendError("the demo backend runs only in demo mode")
        return DemoBackend(model, items)
    if kind == "openai":
        return OpenAIBackend(base_url, model, concurrency=concurrency, seed=seed, max_retries=max_retries,
                             timeout=timeout, address=address)
    if kind == "vllm":
        return VLLMBackend(model, seed=seed, **vllm_options)
    raise BackendError(f"unknown backend '{kind}' (vllm, openai or demo)")
