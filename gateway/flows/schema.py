"""The vocabulary of flow files: node types and their fields, field and condition types, and the words
a load error uses for a value. Pure data and predicates; the checks are in :mod:`.fields` and :mod:`.graph`.
"""
from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

#: The fixed transfer targets of asterisk_conf/extensions.conf [hotline-transfer].
DEFAULT_TRANSFER_TARGETS = frozenset({"police-110", "fire-119", "medical-120", "water", "power", "gas", "heating"})



# type -> (required fields, optional fields, fields that name a next node,
#          whether the node waits for the caller's input)
NODE_SCHEMAS: dict[str, tuple[frozenset, frozenset, tuple[str, ...], bool]] = {
    # play a prompt; keys pressed during it may jump (e.g. the emergency key)
    "prompt": (frozenset({"prompt"}), frozenset({"next", "keys"}), ("next",), False),
    # DTMF menu: '*' repeats, '0' reaches an agent; retries then the queue
    "menu": (
        frozenset({"prompt", "options"}),
        frozenset({"retries", "timeout_ms", "invalid_prompt", "timeout_prompt", "choice"}),
        (),
        True,
    ),
    # digits with length and terminator, kept in a flow variable
    "input": (
        frozenset({"prompt", "variable", "max_digits", "next"}),
        frozenset({"min_digits", "terminator", "timeout_ms", "retries", "invalid_prompt"}),
        ("next",),
        True,
    ),
    # record after the beep; the recording becomes a transcription job
    "record": (
        frozenset({"prompt", "next"}),
        frozenset({"max_seconds", "silence_seconds", "done_prompt", "error_prompt"}),
        ("next",),
        True,
    ),
    "transfer": (frozenset({"target"}), frozenset({"announce", "reason"}), (), False),
    "queue": (frozenset(), frozenset({"queue", "priority", "announce"}), (), False),
    # set channel variables (the agent's screen pop) and flow variables
    "set": (frozenset({"variables", "next"}), frozenset(), ("next",), False),
    # first matching case wins
    "branch": (frozenset({"cases", "default"}), frozenset(), ("default",), False),
    "goto": (frozenset({"next"}), frozenset(), ("next",), False),
    "hangup": (frozenset(), frozenset({"prompt"}), (), False),
    # speak a work order's status from the ticket store
    "order_status": (
        frozenset({"variable", "next"}),
        frozenset({"unknown_prompt", "error_prompt"}),
        ("next",),
        False,
    ),
    # look the caller up: priority list, open work order (sets flow variables)
    "caller_lookup": (frozenset({"next"}), frozenset({"priority_list", "priority"}), ("next",), False),
    # store a durable "call me back" request with the caller's place in line
    "callback_request": (frozenset({"next"}), frozenset({"queue", "done_prompt"}), ("next",), False),
    # satisfaction survey (outbound): take the call's next order and introduce it (topic, date); none left → done
    "survey_intro": (frozenset({"prompt", "next", "done"}), frozenset({"after_prompt"}), ("next", "done"), False),
    # one survey question: keys (and, with speech, a grammar-restricted spoken answer); retries, then no response
    "survey_question": (
        frozenset({"prompt", "question", "answers", "next"}),
        frozenset({"retries", "timeout_ms", "invalid_prompt", "speech", "speech_seconds", "decline_key",
                   "decline_next"}),
        ("next", "decline_next"),
        True,
    ),
    # optional short voice comment → a transcription job with the order id
    "survey_comment": (
        frozenset({"prompt", "next"}),
        frozenset({"max_seconds", "silence_seconds", "done_prompt"}),
        ("next",),
        True,
    ),
    # the current order's survey is complete (stored once); on to the next order
    "survey_done": (frozenset({"next"}), frozenset(), ("next",), False),
}

PROMPT_FIELDS = (
    "prompt", "announce", "after_prompt", "invalid_prompt", "timeout_prompt", "done_prompt", "unknown_prompt",
    "error_prompt",
)



def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


class FieldType(NamedTuple):
    """What a field must be, in the words an error message uses."""

    what: str
    accepts: Callable[[Any], bool]


TEXT = FieldType("text", lambda value: isinstance(value, str))
INTEGER = FieldType("an integer", is_int)
NUMBER = FieldType("a number", is_number)
BOOLEAN = FieldType("true or false", lambda value: isinstance(value, bool))
MAPPING = FieldType("a mapping", lambda value: isinstance(value, Mapping))
LIST = FieldType("a list", lambda value: isinstance(value, list))
DAYS = FieldType("workdays, holidays or a list of day names", lambda value: isinstance(value, (str, list)))
KEY = FieldType("a key", lambda value: key_text(value) is not None)

#: the type of every node field (a field name means the same thing in every node type)
FIELD_TYPES: dict[str, FieldType] = {
    **{name: TEXT for name in PROMPT_FIELDS},
    # names of other nodes
    "next": TEXT, "default": TEXT, "done": TEXT, "decline_next": TEXT,
    "decline_key": KEY,
    "keys": MAPPING, "options": MAPPING, "answers": MAPPING, "variables": MAPPING, "cases": LIST,
    "retries": INTEGER, "timeout_ms": INTEGER, "max_digits": INTEGER, "min_digits": INTEGER,
    "max_seconds": INTEGER, "silence_seconds": INTEGER, "speech_seconds": INTEGER, "priority": INTEGER,
    "terminator": TEXT, "variable": TEXT, "target": TEXT, "reason": TEXT, "queue": TEXT, "choice": TEXT,
    "priority_list": TEXT, "question": TEXT,
    "speech": BOOLEAN,
}

#: condition keys a branch case may test (see engine.FlowRunner._matches), with their types
CONDITION_TYPES: dict[str, FieldType] = {
    "time": TEXT,
    "days": DAYS,
    "setting": TEXT,
    "caller_in": TEXT,
    "var": MAPPING,
    "var_set": TEXT,
    "queue_full": BOOLEAN,
    "queue_wait_over": NUMBER,
    "queue_no_agents": BOOLEAN,
}
CONDITION_KEYS = frozenset(CONDITION_TYPES)
#: flow variables the engine keeps itself; a ``set`` node may not overwrite them
ENGINE_VARIABLES = frozenset({"choices", "sv_orders", "sv_index", "sv_answered"})
DIGITS = "0123456789*#"
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_WINDOW = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def describe(value: Any) -> str:
    """A value as a flow author wrote it: its YAML kind and (shortened) text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    kind = ("an integer" if is_int(value) else "a number" if isinstance(value, float) else "text"
            if isinstance(value, str) else "a mapping" if isinstance(value, Mapping) else "a list"
            if isinstance(value, list) else type(value).__name__)
    text = shown(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


#: ``repr`` cut short at every level: YAML aliases can make a few hundred bytes a list of billions of items
#: (the "billion laughs"), whose full ``repr`` would never end
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = 8
_SHORT.maxstring = _SHORT.maxlong = _SHORT.maxother = 80
shown = _SHORT.repr


def type_problem(where: str, name: str, expected: FieldType, value: Any) -> str:
    hint = " (put it in quotes)" if expected is TEXT and isinstance(value, (int, float)) else ""
    return f"{where}: '{name}' must be {expected.what}, not {describe(value)}{hint}"


def where_in(source: str, node: str | None) -> str:
    return f"{source}: node {node}" if node else source


def key_text(key: Any) -> str | None:
    """A DTMF key as written in YAML: ``"1"``, ``"#"`` or the integer 1; anything else is not a key."""
    if isinstance(key, str) and len(key) == 1:
        return key
    if is_int(key) and 0 <= key <= 9:
        return str(key)
    return None


def is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or is_number(value)


def is_days(value: Any) -> bool:
    if isinstance(value, str):
        return value in ("workdays", "holidays")
    return bool(value) and all(
        isinstance(day, str) and (day.lower() in _DAY_NAMES or day.lower() in _FULL_DAY_NAMES) for day in value
    )


def is_one_line(text: str) -> bool:
    """No line break or NUL: such text cannot travel as an AGI argument (a prompt, a channel variable)."""
    return not any(c in text for c in "\r\n\x00")


def is_name(value: Any) -> bool:
    return isinstance(value, str) and value.replace("_", "a").isalnum() and value.isascii()


def is_time_window(value: Any) -> bool:
    return isinstance(value, str) and _TIME_WINDOW.fullmatch(value) is not None
