"""Outbound dialer core, shared by the callback service and the satisfaction surveys.

Modules, one purpose each (imports point down the list):

* :mod:`.policy`   — which numbers may be dialled at all (toll-fraud guard);
* :mod:`.windows`  — when a number may be dialled (local call windows, holidays);
* :mod:`.retry`    — what happens after an attempt (backoff per outcome, caps, expiry);
* :mod:`.pacing`   — how many calls may start now (trunk capacity, inbound reserve, agents);
* :mod:`.pacestore` — the pacing every gateway instance shares, in Redis (rate, calls in flight, agent holds);
* :mod:`.jobs`     — durable jobs in Redis (due-time index, leases, history, caps, DNC);
* :mod:`.originate` — AMI Originate and the attempt outcome;
* :mod:`.service`  — the dispatch loop tying them together.
"""
