"""Surveys in Redis: orders, survey calls, answers and results — every state change one Lua step.

Keys (``P`` = ``<prefix>:surveys``, default ``hotline:surveys``)::

    P:order:<order id>   HASH    the order (fields of the event), e164, dial, status
                                 (pending | calling | one of FINAL_STATUSES), call, answers
                                 (solved, satisfaction, *_via key|speech), comment (recording id),
                                 comment_text (masked transcript), comment_confidence, comment_transcribed_at,
                                 reached, finished_at, day
    P:pending:<e164>     ZSET    order id → due time (orders of the number waiting for a call)
    P:numbers            ZSET    e164 → time of the number's next call (no call in progress)
    P:active:<e164>      STRING  the number's survey call in progress (= dialer job id)
    P:last:<e164>        STRING  when the number's last survey call ended (spacing)
    P:call:<call id>     HASH    e164, dial, orders (comma list), created_at, first_due, final
    P:unsubmitted        ZSET    call id → time: calls whose dialer job is not yet confirmed
    P:calls              ZSET    call id → time: calls not yet ended (swept against the dialer's jobs)
    P:day:<YYYY-MM-DD>   ZSET    order id → finish time (the daily report's index)
    P:outbox             STREAM  for the platform's webhook: one result per finished order, and a
                                 ``kind=comment`` update when a comment's transcript arrives after the result
    <reopen stream>      STREAM  default hotline:workorders:reopen; field ``event``:
                                 ``reopen`` (dissatisfied or unsolved: order_id, reason, solved,
                                 satisfaction, comment_recording_id, comment_text, comment_confidence,
                                 category, unit, finished_at) or ``comment`` (the transcript of a
                                 reopened order's voice comment, which arrives after its reopen
                                 event: order_id, reopened, comment_recording_id, comment_text,
                                 comment_confidence, transcribed_at). Consumers dispatch on ``event``
                                 (an entry without it is a reopen, from an older gateway).

An order is accepted once (replays and duplicates add nothing), is in at most one
call at a time, and is finished once: :meth:`SurveyStore.finish` writes the final
status, the report index, the webhook outbox entry and the reopen event in one
atomic step and refuses a second finish — exactly one result per order.

Voice comments: the survey flow records the comment and queues it on the
transcription stream (``kind=survey_comment``, ``order_id``); the ASR worker
(``asr/worker.py``) stores the masked transcript with :meth:`SurveyStore.attach_comment`
— never as a new work-order draft. The comment is recorded before the order is
finished, but its transcript almost always arrives after: then it goes out as an
update (webhook ``survey-<order id>-comment``, reopen stream ``event=comment``);
if it arrives first, the result and the reopen event carry it themselves.

All methods block (redis-py): run them in the Redis thread pool.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model import FINAL_STATUSES, NO_RESPONSE, ClosedOrder

__all__ = ["CallPlan", "SurveyStore"]

_ACCEPT = """
local P, id, now, due, e164, spacing = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local ok = P .. ':order:' .. id
if redis.call('EXISTS', ok) == 1 then return 'exists' end
for i = 7, #ARGV, 2 do redis.call('HSET', ok, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', ok, 'status', 'pending', 'due_at', ARGV[4], 'accepted_at', ARGV[3])
redis.call('ZADD', P .. ':pending:' .. e164, due, id)
if redis.call('EXISTS', P .. ':active:' .. e164) == 0 then
  local at = due
  local last = tonumber(redis.call('GET', P .. ':last:' .. e164) or '')
  if last and last + spacing > at then at = last + spacing end
  local cur = tonumber(redis.call('ZSCORE', P .. ':numbers', e164) or '')
  if not cur or at < cur then redis.call('ZADD', P .. ':numbers', at, e164) end
end
return 'added'
"""

_PROMOTE = """
local P, now, horizon, per_call, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local numbers = redis.call('ZRANGEBYSCORE', P .. ':numbers', '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, e164 in ipairs(numbers) do
  redis.call('ZREM', P .. ':numbers', e164)
  if redis.call('EXISTS', P .. ':active:' .. e164) == 0 then
    local pk = P .. ':pending:' .. e164
    local ids = redis.call('ZRANGEBYSCORE', pk, '-inf', horizon, 'LIMIT', 0, per_call)
    if #ids > 0 then
      local first = redis.call('ZRANGE', pk, 0, 0, 'WITHSCORES')
      local seq = redis.call('INCR', P .. ':seq')
      local cid = 'sv-' .. string.gsub(ids[1], '[^%w_.-]', '') .. '-' .. seq
      local dial = ''
      for _, id in ipairs(ids) do
        redis.call('ZREM', pk, id)
        redis.call('HSET', P .. ':order:' .. id, 'status', 'calling', 'call', cid)
        if dial == '' then dial = redis.call('HGET', P .. ':order:' .. id, 'dial') or '' end
      end
      redis.call('HSET', P .. ':call:' .. cid, 'e164', e164, 'dial', dial, 'orders', table.concat(ids, ','),
        'created_at', now, 'first_due', first[2])
      redis.call('SET', P .. ':active:' .. e164, cid)
      redis.call('ZADD', P .. ':unsubmitted', now, cid)
      redis.call('ZADD', P .. ':calls', now, cid)
      table.insert(out, cid)
    end
  end
end
return out
"""

_ANSWER = """
local ok, now = KEYS[1], ARGV[1]
if redis.call('HGET', ok, 'status') ~= 'calling' then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', ok, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', ok, 'updated_at', now)
return 1
"""

_FINISH = """
local P, id, status, now, day, reopen, ttl, day_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local ok = P .. ':order:' .. id
local st = redis.call('HGET', ok, 'status')
if not st then return {'unknown', ''} end
if st ~= 'pending' and st ~= 'calling' then return {'already', st} end
if st == 'pending' then
  local e164 = redis.call('HGET', ok, 'e164') or ''
  redis.call('ZREM', P .. ':pending:' .. e164, id)
end
redis.call('HSET', ok, 'status', status, 'finished_at', now, 'day', day)
redis.call('ZADD', P .. ':day:' .. day, now, id)
redis.call('EXPIRE', P .. ':day:' .. day, day_ttl)
local flat = redis.call('HGETALL', ok)
local rec = {}
for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
local reason = ''
if status == 'completed' or status == 'partial' then
  if rec['solved'] == 'unsolved' then reason = 'unsolved' end
  if rec['satisfaction'] == 'dissatisfied' then
    if reason == '' then reason = 'dissatisfied' else reason = reason .. '+dissatisfied' end
  end
end
if reason ~= '' and reopen ~= '' then
  redis.call('XADD', reopen, '*', 'event', 'reopen', 'order_id', id, 'reason', reason, 'solved', rec['solved'] or '',
    'satisfaction', rec['satisfaction'] or '', 'comment_recording_id', rec['comment'] or '',
    'comment_text', rec['comment_text'] or '', 'comment_confidence', rec['comment_confidence'] or '',
    'category', rec['category'] or '', 'unit', rec['unit'] or '', 'finished_at', now)
  redis.call('HSET', ok, 'reopened', reason)
  rec['reopened'] = reason
end
redis.call('XADD', P .. ':outbox', '*', 'order_id', id, 'data', cjson.encode(rec))
if ttl > 0 then redis.call('EXPIRE', ok, ttl) end
return {'finished', status}
"""

_COMMENT = """
local P, id, rid, text, conf, now, reopen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local ok = P .. ':order:' .. id
local st = redis.call('HGET', ok, 'status')
if not st then return {'unknown', ''} end
local cur = redis.call('HGET', ok, 'comment') or ''
if cur ~= '' and cur ~= rid then return {'other', cur} end
local result = 'duplicate'
if redis.call('HEXISTS', ok, 'comment_transcribed_at') == 0 then
  redis.call('HSET', ok, 'comment', rid, 'comment_text', text, 'comment_confidence', conf,
    'comment_transcribed_at', now)
  if st == 'pending' or st == 'calling' then
    result = 'attached'
  else
    local reopened = redis.call('HGET', ok, 'reopened') or ''
    if reopened ~= '' and reopen ~= '' then
      redis.call('XADD', reopen, '*', 'event', 'comment', 'order_id', id, 'reopened', reopened,
        'comment_recording_id', rid, 'comment_text', text, 'comment_confidence', conf, 'transcribed_at', now)
    end
    redis.call('XADD', P .. ':outbox', '*', 'order_id', id, 'kind', 'comment', 'data', cjson.encode({
      order_id = id, status = st, reopened = reopened, comment_recording_id = rid, comment_text = text,
      comment_confidence = conf, transcribed_at = now}))
    result = 'updated'
  end
end
if #KEYS == 2 then
  redis.call('XACK', KEYS[1], ARGV[8], ARGV[9])
  redis.call('HDEL', KEYS[2], ARGV[9])
end
return {result, st}
"""

_SUBMITTED_CALLS = """
local P, limit = ARGV[1], tonumber(ARGV[2])
local rows = redis.call('ZRANGE', P .. ':calls', 0, limit - 1)
local out = {}
for _, cid in ipairs(rows) do
  if not redis.call('ZSCORE', P .. ':unsubmitted', cid) then table.insert(out, cid) end
end
return out
"""

_RELEASE = """
local P, cid, now, spacing, final = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local ck = P .. ':call:' .. cid
local e164 = redis.call('HGET', ck, 'e164')
if not e164 then return 0 end
redis.call('HSET', ck, 'final', final, 'ended_at', ARGV[3])
redis.call('ZREM', P .. ':unsubmitted', cid)
redis.call('ZREM', P .. ':calls', cid)
if redis.call('GET', P .. ':active:' .. e164) == cid then redis.call('DEL', P .. ':active:' .. e164) end
redis.call('SET', P .. ':last:' .. e164, ARGV[3], 'EX', math.floor(spacing * 2 + 86400))
local first = redis.call('ZRANGE', P .. ':pending:' .. e164, 0, 0, 'WITHSCORES')
if #first > 0 then
  local at = tonumber(first[2])
  if now + spacing > at then at = now + spacing end
  redis.call('ZADD', P .. ':numbers', at, e164)
end
return 1
"""


@dataclass(frozen=True)
class CallPlan:
    """One survey call: a number and the orders it asks about (its id is the dialer job id)."""

    call_id: str
    e164: str
    dial: str
    orders: tuple[dict[str, str], ...]
    first_due: float
    created_at: float


class SurveyStore:
    def __init__(self, client: Any, key_prefix: str = "hotline", reopen_stream: str = "hotline:workorders:reopen",
                 result_ttl: int = 400 * 24 * 3600) -> None:
        self.client = client
        self.prefix = f"{key_prefix}:surveys"
        self.reopen_stream = reopen_stream
        self.result_ttl = result_ttl
        self._accept = client.register_script(_ACCEPT)
        self._promote = client.register_script(_PROMOTE)
        self._answer = client.register_script(_ANSWER)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)
        self._submitted_calls = client.register_script(_SUBMITTED_CALLS)
        self._comment = client.register_script(_COMMENT)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- orders in -------------------------------------------------------------------
    def accept(self, order: ClosedOrder, e164: str, dial: str, due_at: float, now: float, spacing: float) -> str:
        """``added`` or ``exists`` (idempotent per order id: replays and duplicates add nothing)."""
        fields = {**order.as_fields(), "e164": e164, "dial": dial}
        args: list[Any] = [self.prefix, order.order_id, repr(now), repr(due_at), e164, repr(spacing)]
        for name, value in fields.items():
            args += [name, value]
        return self._accept(args=args)

    def promote(self, now: float, horizon: float, per_call: int, limit: int = 100) -> list[CallPlan]:
        """Numbers whose call is due → survey calls (orders moved to ``calling``)."""
        self._promote(args=[self.prefix, repr(now), repr(horizon), per_call, limit])
        return self.unsubmitted()

    def unsubmitted(self, limit: int = 500) -> list[CallPlan]:
        """Calls not yet confirmed as dialer jobs (new ones, or left by a crash)."""
        ids = self.client.zrange(self.key("unsubmitted"), 0, limit - 1)
        return [plan for plan in (self.call(cid) for cid in ids) if plan is not None]

    def submitted(self, call_id: str) -> None:
        self.client.zrem(self.key("unsubmitted"), call_id)

    def call(self, call_id: str) -> CallPlan | None:
        data = self.client.hgetall(self.key("call", call_id))
        if not data:
            return None
        ids = [i for i in data.get("orders", "").split(",") if i]
        pipe = self.client.pipeline(transaction=False)
        for order_id in ids:
            pipe.hgetall(self.key("order", order_id))
        orders = tuple({**o, "order_id": i} for i, o in zip(ids, pipe.execute()) if o)
        return CallPlan(call_id, data.get("e164", ""), data.get("dial", ""), orders,
                        float(data.get("first_due") or 0), float(data.get("created_at") or 0))

    # -- the call (survey flow) ---------------------------------------------------------------
    def order(self, order_id: str) -> dict[str, str]:
        return self.client.hgetall(self.key("order", order_id))

    def update(self, order_id: str, now: float, fields: Mapping[str, str]) -> bool:
        """Answers and progress of an order in a call (refused once the order is finished)."""
        args: list[Any] = [repr(now)]
        for name, value in fields.items():
            args += [name, value]
        return bool(self._answer(keys=[self.key("order", order_id)], args=args))

    # -- results --------------------------------------------------------------------------------
    def finish(self, order_id: str, status: str, now: float, day: str) -> tuple[str, dict[str, str]]:
        """(``finished`` | ``already`` | ``unknown``, the order as stored). Exactly once per order."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"unknown survey status {status!r}")
        result, _ = self._finish(args=[self.prefix, order_id, status, repr(now), day, self.reopen_stream,
                                       self.result_ttl, self.result_ttl])
        return result, self.order(order_id)

    def comment_transcribed(self, order_id: str, recording_id: str) -> bool:
        """True once this recording's transcript is on the order (a redelivered job has nothing to do)."""
        comment, at = self.client.hmget(self.key("order", order_id), "comment", "comment_transcribed_at")
        return bool(at) and comment == recording_id

    def attach_comment(self, order_id: str, recording_id: str, text: str, confidence: float | None, now: float,
                       ack: tuple[str, str, str, str] | None = None) -> tuple[str, str]:
        """The voice comment's transcript (masked text, confidence) onto the order's result — once.

        Returns (result, the order's status), result one of:

        * ``attached``  the order is still in its call: the transcript goes out with the result
          (outbox entry and reopen event written by :meth:`finish`);
        * ``updated``   the order was already finished: a ``comment`` update goes to the outbox
          (posted as ``survey-<order id>-comment``) and, if the order was reopened, an
          ``event=comment`` entry to the reopen stream;
        * ``duplicate`` this recording's transcript is already stored (a redelivered job);
        * ``unknown``   no such order (expired, or another key prefix);
        * ``other``     the order's comment is another recording (the status slot holds its id).

        ``ack`` = (jobs stream, group, entry id, errors hash): the transcription job is
        acknowledged in the same atomic step when the result is ``attached``, ``updated``
        or ``duplicate`` — no ack without a stored transcript.
        """
        conf = "" if confidence is None else f"{float(confidence):.3f}"
        keys: list[str] = []
        args: list[Any] = [self.prefix, order_id, recording_id, text, conf, repr(now), self.reopen_stream]
        if ack is not None:
            stream, group, entry_id, errors = ack
            keys = [stream, errors]
            args += [group, entry_id]
        result, status = self._comment(keys=keys, args=args)
        return result, status

    def release(self, call_id: str, now: float, spacing: float, final: str) -> int:
        """The call is over: the number is free again; its remaining orders wait for the spacing."""
        return int(self._release(args=[self.prefix, call_id, repr(now), repr(spacing), final]))

    # -- reads ----------------------------------------------------------------------------------
    def day(self, day: str) -> list[dict[str, str]]:
        ids = self.client.zrange(self.key("day", day), 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for order_id in ids:
            pipe.hgetall(self.key("order", order_id))
        return [{**o, "order_id": i} for i, o in zip(ids, pipe.execute()) if o]

    def open_calls(self, limit: int = 1000) -> list[str]:
        """Calls not yet ended, oldest first (for the sweep against the dialer's jobs)."""
        return self.client.zrange(self.key("calls"), 0, limit - 1)

    def submitted_calls(self, limit: int = 1000) -> list[str]:
        """Calls not yet ended whose dialer job was added, oldest first — one atomic read.

        Both sets are read in one step: a call planned meanwhile (by this or another
        instance) is either in neither or still unsubmitted, never "open with no job".
        The job is added before the call leaves ``P:unsubmitted``, so every call
        returned here has (or had) its dialer job.
        """
        return self._submitted_calls(args=[self.prefix, limit])

    def next_due(self) -> float | None:
        first = self.client.zrange(self.key("numbers"), 0, 0, withscores=True)
        return float(first[0][1]) if first else None


def real_answers(order: Mapping[str, str], questions: Iterable[str] = ("solved", "satisfaction")) -> int:
    """How many questions the citizen actually answered (a no-response does not count)."""
    return sum(1 for q in questions if order.get(q) and order.get(q) != NO_RESPONSE)


def decode_result(data: str) -> dict[str, Any]:
    return json.loads(data)
