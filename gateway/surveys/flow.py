"""What the survey flow's nodes ask of the survey campaign (``FlowRunner.survey``).

Answers are written the moment they are given (a hang-up keeps them); an order is
completed once (``SurveyStore.finish``). Every method may raise; the flow's node
runners catch, count and go on.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from .metrics import SurveyMetrics
from .speech import SpeechRecognizer, SpeechUnavailable, match_answer
from .store import SurveyStore, real_answers

__all__ = ["SurveyFlowBackend"]

log = Logger()

RunBlocking = Callable[[Callable[[], Any]], defer.Deferred]


class SurveyFlowBackend:
    def __init__(
        self,
        *,
        clock: Any,
        run_blocking: RunBlocking,
        store: SurveyStore,
        metrics: SurveyMetrics,
        client: Any,
        jobs_stream: str = "hotline:jobs:transcribe",
        speech: SpeechRecognizer | None = None,
        speech_language: str = "zh",
        finish: Callable[[str, str], Any] | None = None,
        decline: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self.clock = clock
        self._run = run_blocking
        self.store = store
        self.metrics = metrics
        self.client = client
        self.jobs_stream = jobs_stream
        self.speech = speech
        self.speech_language = speech_language
        #: the campaign's finish (writes once, counts once); set by the composition root
        self.finish = finish
        #: the campaign's decline (do-not-call + ``declined``); set by the composition root
        self.decline_orders = decline

    @property
    def speech_enabled(self) -> bool:
        return self.speech is not None

    async def open_orders(self, order_ids: Iterable[str]) -> set[str]:
        ids = list(order_ids)

        def read() -> set[str]:
            return {i for i in ids if self.store.order(i).get("status") in ("calling", "pending")}

        return await self._run(read)

    async def reached(self, order_id: str) -> bool:
        now = self.clock.seconds()
        return await self._run(lambda: self.store.update(order_id, now, {"reached": "1"}))

    async def answer(self, order_id: str, question: str, answer: str, via: str) -> bool:
        now = self.clock.seconds()
        self.metrics.answers_by.labels(via=via).inc()
        return await self._run(lambda: self.store.update(order_id, now, {question: answer, f"{question}_via": via}))

    async def comment(self, order_id: str, job: Mapping[str, Any]) -> bool:
        """The voice comment → a transcription job (like the IVR's voice messages, plus the order id)."""
        now = self.clock.seconds()
        fields = {"recording_id": job["recording_id"], "data": json.dumps(dict(job), ensure_ascii=False),
                  "order_id": order_id}

        def write() -> bool:
            self.client.xadd(self.jobs_stream, fields)
            return self.store.update(order_id, now, {"comment": job["recording_id"]})

        return await self._run(write)

    async def complete(self, order_id: str) -> str:
        """End of the order's questions: completed if the citizen answered at least one."""
        order = await self._run(lambda: self.store.order(order_id))
        if real_answers(order) == 0:
            return "no-answers"  # silence (voicemail?): the call's end decides, the dialer may try again
        if self.finish is None:
            return "no-campaign"
        return await self.finish(order_id, "completed")

    async def decline(self, order_ids: list[str]) -> int:
        """"Don't call me again" (the flow's decline key): how many orders ended as declined."""
        if self.decline_orders is None:
            raise RuntimeError("no survey campaign: the decline was not stored")
        return await self.decline_orders(order_ids)

    async def recognise(self, path: str, words: Mapping[str, str]) -> str | None:
        if self.speech is None:
            return None
        try:
            text = await self.speech.recognise(path, sorted(words))
        except SpeechUnavailable as exc:
            result = "timeout" if "longer than" in str(exc) else "unavailable"
            self.metrics.speech.labels(result=result).inc()
            log.info("survey: spoken answer not recognised ({error}); keys only", error=str(exc))
            return None
        answer = match_answer(text, words)
        self.metrics.speech.labels(result="matched" if answer else "unmatched").inc()
        return answer
