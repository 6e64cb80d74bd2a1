"""Abandoned-call callbacks (漏话回拨) on the dialer core.

* :mod:`.service` — rules (short abandons, merging, cancellation, expiry, modes) and outcomes;
* :mod:`.sources` — the abandon listener, the safety-net and IVR-request streams;
* :mod:`.api`     — the authenticated HTTP API (list, show, add, cancel; the do-not-call list);
* :mod:`.metrics` — scheduled / attempted / connected / expired, abandon→connected latency by source.
"""
