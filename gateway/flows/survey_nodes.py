"""Runners of the survey node types (outbound satisfaction surveys, ``ivr_flows/survey.yaml``).

The call's orders come as channel variables from the dialer (``HOTLINE_SV_COUNT``,
``HOTLINE_SV_ORDER_<i>``, ``HOTLINE_SV_TOPIC_<i>``, ``HOTLINE_SV_DATE_<i>``); answers
are stored the moment they are given, so a hang-up at any point keeps what was
answered so far. The backend (``FlowRunner.survey``) is the survey campaign; if it
fails, the question is still asked and the call goes on — a survey call never breaks
on an auxiliary failure, it only loses what could not be stored (counted and logged).

* ``survey_intro``    next order → intro prompt, topic prompt ``topic_<key>``, the report
                      date (month, day), ``after_prompt``; no order left → ``done``
* ``survey_question`` keys per answer; with ``speech: true`` and a grammar for the
                      configured language (``settings.speech``) a short spoken answer is
                      recorded (keys still end it) and recognised off the reactor;
                      invalid or missing answers are retried, then ``no_response``;
                      ``decline_key`` ("don't call me again"): the number joins the dialer's
                      do-not-call list, the call's open orders end as ``declined``, on to
                      ``decline_next``
* ``survey_comment``  optional voice comment → transcription job with the order id
* ``survey_done``     the order's survey is complete (written once)
"""
from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from ..agi.session import AgiSession
from .model import Node

__all__ = ["ANSWERED_VAR", "SURVEY_RECORDING_DIR", "SurveyNodes"]

log = Logger()

#: set to 1 on the channel once the citizen answered a question (the dialplan's attempt record)
ANSWERED_VAR = "HOTLINE_SV_ANSWERED"
#: where Asterisk writes survey comments and spoken answers: the voice-message directory the lab and the
#: docker entrypoint create (names start with the call id, the order id and what was recorded)
SURVEY_RECORDING_DIR = "/var/spool/asterisk/hotline/messages"
_MAX_ORDERS = 9


class SurveyNodes:
    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def runners(self) -> dict[str, Any]:
        return {
            "survey_intro": self._intro,
            "survey_question": self._question,
            "survey_comment": self._comment,
            "survey_done": self._done,
        }

    @property
    def backend(self) -> Any:
        return self.runner.survey

    async def _safely(self, session: AgiSession, what: str, call, default=None):
        """Run a backend call; any failure is logged and counted, and the call goes on."""
        if self.backend is None:
            return default
        try:
            return await call()
        except Exception as exc:  # noqa: BLE001 — an auxiliary failure must not break the call
            self.runner.services.failed(f"survey_{what}", str(exc))
            session.step(f"survey:{what}:unavailable")
            log.warn("Survey call {call_id}: {what} failed ({error}); going on", call_id=session.call_id, what=what,
                     error=f"{type(exc).__name__}: {exc}")
            return default

    # -- the call's orders ---------------------------------------------------------------
    async def _orders(self, session: AgiSession) -> list[dict[str, str]]:
        orders = session.vars.get("sv_orders")
        if isinstance(orders, list):
            return orders
        count_text = await session.get_variable("HOTLINE_SV_COUNT") or "0"
        count = int(count_text) if count_text.isdigit() else 0
        orders = []
        for index in range(1, min(count, _MAX_ORDERS) + 1):
            order_id = await session.get_variable(f"HOTLINE_SV_ORDER_{index}") or ""
            if not order_id:
                continue
            orders.append({
                "order_id": order_id,
                "topic": await session.get_variable(f"HOTLINE_SV_TOPIC_{index}") or "other",
                "date": await session.get_variable(f"HOTLINE_SV_DATE_{index}") or "",
            })
        if self.backend is not None:
            # an order already finished (a duplicate call) is not asked again
            open_ids = await self._safely(session, "orders", lambda: self.backend.open_orders(
                [o["order_id"] for o in orders]), default=None)
            if open_ids is not None:
                orders = [o for o in orders if o["order_id"] in open_ids]
        session.vars["sv_orders"] = orders
        session.vars["sv_index"] = -1
        session.step(f"survey:orders:{len(orders)}")
        return orders

    def _current(self, session: AgiSession) -> dict[str, str] | None:
        orders = session.vars.get("sv_orders") or []
        index = int(session.vars.get("sv_index", -1))
        return orders[index] if 0 <= index < len(orders) else None

    # -- nodes ------------------------------------------------------------------------------
    async def _intro(self, node: Node, session: AgiSession) -> str | None:
        orders = await self._orders(session)
        index = int(session.vars.get("sv_index", -1)) + 1
        session.vars["sv_index"] = index
        for question in ("solved", "satisfaction"):
            session.vars.pop(question, None)
        if index >= len(orders):
            return node.get("done")
        order = orders[index]
        session.step(f"survey:order:{order['order_id']}")
        await self._safely(session, "reached", lambda: self.backend.reached(order["order_id"]))
        await self.runner._play(session, node.get("prompt"))
        topic = f"topic_{order['topic']}"
        await self.runner._play(session, topic if topic in self.runner.flow.prompts else "topic_other")
        date = order.get("date", "")
        if len(date) == 8 and date.isdigit():
            await session.command("SAY NUMBER", int(date[4:6]), "")
            await self.runner._play(session, "date_month")
            await session.command("SAY NUMBER", int(date[6:8]), "")
            await self.runner._play(session, "date_day")
        await self.runner._play(session, node.get("after_prompt"))
        return node.get("next")

    async def _question(self, node: Node, session: AgiSession) -> str | None:
        question = node.get("question")
        answers = {str(k): str(v) for k, v in node.get("answers").items()}
        decline = str(node.get("decline_key") or "")
        keys = "".join(sorted(answers)) + decline
        retries = int(node.get("retries", 2))
        timeout_ms = int(node.get("timeout_ms", 6000))
        words = self._grammar(node, question)
        order = self._current(session)
        answer, via = None, "no_response"
        for attempt in range(retries + 1):
            digit = await self.runner._play(session, node.get("prompt"), keys)
            if not digit and words:
                digit, answer = await self._spoken(node, session, order, question, keys, words, attempt)
            elif not digit:
                digit = await session.wait_for_digit(timeout_ms)
            if answer is not None:
                via = "speech"
                break
            if decline and digit == decline:
                return await self._decline(node, session)
            if digit in answers:
                answer, via = answers[digit], "key"
                break
            session.step(f"survey:{question}:{'invalid' if digit else 'timeout'}")
            if attempt < retries:
                await self.runner._play(session, node.get("invalid_prompt"))
        if answer is None:
            answer = "no_response"
        session.vars[question] = answer
        session.step(f"survey:{question}={answer}" + (f" ({via})" if via != "no_response" else ""))
        if order is not None:
            await self._safely(session, "answer", lambda: self.backend.answer(order["order_id"], question, answer, via))
        if answer != "no_response" and not session.vars.get("sv_answered"):
            session.vars["sv_answered"] = True
            await session.set_variable(ANSWERED_VAR, "1")
        return node.get("next")

    async def _decline(self, node: Node, session: AgiSession) -> str | None:
        """"Don't call me again": every order of this call still open ends as declined, the number joins
        the dialer's do-not-call list. Stored or not, the citizen hears the decline prompt and the call ends."""
        orders = [o["order_id"] for o in session.vars.get("sv_orders") or []]
        session.step("survey:declined")
        result = await self._safely(session, "decline", lambda: self.backend.decline(orders))
        session.step(f"survey:declined:{result if result is not None else '-'}")
        return node.get("decline_next")

    def _grammar(self, node: Node, question: str) -> dict[str, str]:
        if not node.get("speech") or self.backend is None or not getattr(self.backend, "speech_enabled", False):
            return {}
        speech = self.runner.flow.settings.get("speech") or {}
        return dict((speech.get(self.backend.speech_language) or {}).get(question) or {})

    async def _spoken(self, node: Node, session: AgiSession, order, question: str, keys: str,
                      words: dict[str, str], attempt: int) -> tuple[str | None, str | None]:
        """Record a short answer (a key still ends it) and recognise it with the question's grammar."""
        name = f"{session.call_id.replace('.', '-')}-{(order or {}).get('order_id', 'x')}-{question}-{attempt + 1}"
        path = f"{SURVEY_RECORDING_DIR}/{name}"
        seconds = int(node.get("speech_seconds", 4))
        # a fixed short window (no silence cut-off: the answer may start a moment after the prompt)
        result = await session.record(path, "wav", keys, seconds * 1000, 0, beep=False)
        if result.ended_by == "dtmf" and result.digit:
            return result.digit, None
        answer = await self._safely(session, "speech", lambda: self.backend.recognise(f"{path}.wav", words),
                                    default=None)
        if answer is not None:
            session.step(f"survey:{question}:spoken")
        return None, answer

    async def _comment(self, node: Node, session: AgiSession) -> str | None:
        order = self._current(session)
        await self.runner._play(session, node.get("prompt"))
        started = self.runner.services.now()
        order_id = (order or {}).get("order_id", "x")
        name = f"{session.call_id.replace('.', '-')}-{order_id}-comment-{started:%Y%m%d%H%M%S}"
        path = f"{SURVEY_RECORDING_DIR}/{name}"
        result = await session.record(path, "wav", "#", int(node.get("max_seconds", 30)) * 1000,
                                      int(node.get("silence_seconds", 3)), beep=True)
        session.step(f"survey:comment:{result.ended_by}")
        job = {
            "recording_id": name,
            "path": f"{path}.wav",
            "call_id": session.call_id,
            "caller": session.caller,
            "channel": session.environment.channel,
            "flow": self.runner.flow.name,
            "flow_version": self.runner.flow.version,
            "ivr_path": list(session.path),
            "choices": [f"{q}={session.vars[q]}" for q in ("solved", "satisfaction") if q in session.vars],
            "recorded_at": started.isoformat(),
            "ended_by": result.ended_by,
            "end_position": result.end_position,
            "kind": "survey_comment",
            "order_id": order_id,
        }
        if order is not None and result.end_position > 0:
            await self._safely(session, "comment", lambda: self.backend.comment(order_id, job))
        await self.runner._play(session, node.get("done_prompt"))
        return node.get("next")

    async def _done(self, node: Node, session: AgiSession) -> str | None:
        order = self._current(session)
        if order is not None:
            result = await self._safely(session, "complete", lambda: self.backend.complete(order["order_id"]))
            session.step(f"survey:done:{order['order_id']}:{result or '-'}")
        return node.get("next")
