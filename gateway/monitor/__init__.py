"""Live call-centre state: queues, calls, agents and trunks, fed by AMI.

* :mod:`.model` — the pure state model and per-call accounting (no I/O);
* :mod:`.events` — AMI events → model calls, and the one subscription table;
* :mod:`.resync` — what runs after every (re)connect (snapshots, queue_log);
* :mod:`.queue_log` — Asterisk's queue_log: parser, tail reader, replay;
* :mod:`.metrics` — Prometheus metrics (counters, histograms, live gauges).
"""
