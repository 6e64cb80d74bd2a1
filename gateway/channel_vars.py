"""Channel-variable names shared by the gateway and asterisk_conf/extensions.conf.

One place, so the dialplan and the code cannot drift apart silently: the
integration tests grep extensions.conf for every name defined here.
"""

#: What the dialplan does after the AGI session: queue | transfer | hangup.
NEXT = "HOTLINE_NEXT"
NEXT_QUEUE = "queue"
NEXT_TRANSFER = "transfer"
NEXT_HANGUP = "hangup"

#: Queue name for the hand-off (the dialplan only knows fixed queues).
QUEUE = "HOTLINE_QUEUE"
#: Queue priority (app_queue QUEUE_PRIO); higher is served first.
PRIORITY = "HOTLINE_PRIORITY"
#: Fixed transfer target name (police-110, water, ...), never a raw number.
TRANSFER = "HOTLINE_TRANSFER"
#: The gateway's call id, for the agent's screen pop and the queue events.
CALL_ID = "HOTLINE_CALL_ID"
#: The flow name and version the call ran.
FLOW = "HOTLINE_FLOW"
FLOW_VERSION = "HOTLINE_FLOW_VERSION"

#: Screen pop for the agent: the caller's menu choices (``top=2,utility=1``).
CHOICES = "HOTLINE_CHOICES"
#: "1" when the caller has an open work order (a repeat caller).
REPEAT_CALLER = "HOTLINE_REPEAT_CALLER"
#: The caller's open work-order number, if any.
OPEN_ORDER = "HOTLINE_OPEN_ORDER"
#: "1" when the caller is on the priority list (registered elderly, 适老化).
PRIORITY_CALLER = "HOTLINE_PRIORITY_CALLER"

#: Set when the IVR itself served the caller (voice message left, callback
#: requested): the missed-call safety net then records nothing.
SERVED = "HOTLINE_SERVED"

ALL = (NEXT, SERVED, QUEUE, PRIORITY, TRANSFER, CALL_ID, FLOW, FLOW_VERSION, CHOICES, REPEAT_CALLER, OPEN_ORDER,
       PRIORITY_CALLER)
