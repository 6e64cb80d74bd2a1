"""Satisfaction-survey calls (全量回访): every closed work order gets one follow-up call.

Modules, one purpose each (imports point down the list):

* :mod:`.model`     — a closed work order, survey statuses and answers (pure);
* :mod:`.rules`     — delay after closure, combining and spacing one number's orders (pure);
* :mod:`.store`     — orders, calls, answers and results in Redis (atomic Lua steps);
* :mod:`.metrics`   — counters (by category, never by handling unit or number);
* :mod:`.campaign`  — closed orders → survey calls → dialer jobs; dialer outcomes → results;
* :mod:`.results`   — the results webhook (retries, Idempotency-Key);
* :mod:`.triggers`  — work-order-closed events: authenticated HTTP POST and a Redis Stream;
* :mod:`.flow`      — what the survey flow (``ivr_flows/survey.yaml``) asks of the campaign;
* :mod:`.speech`    — spoken answers: grammar-restricted Vosk in a bounded pool, with a timeout;
* :mod:`.report`    — ``hotline-survey report --day D`` (per category and per handling unit).

The dialer (``gateway/dialer``) places the calls: the survey campaign is one of
its campaigns, with its own caller ID, windows, attempts and backoff; the
do-not-call list and the per-number cap are the dialer's.
"""
