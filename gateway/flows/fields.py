"""What the values of a node's fields mean, once their types are right (see :mod:`.schema`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .schema import (
    CONDITION_TYPES, DEFAULT_TRANSFER_TARGETS, DIGITS, ENGINE_VARIABLES, PROMPT_FIELDS, TEXT, describe, is_days,
    is_int, is_name, is_one_line, is_scalar, is_time_window, key_text, shown, type_problem,
)


_RANGES = (
    ("timeout_ms", 1, 60000), ("max_digits", 1, 32), ("min_digits", 1, 32), ("max_seconds", 1, 600),
    ("silence_seconds", 1, 60), ("retries", 0, 5), ("priority", 0, 100), ("speech_seconds", 1, 10),
)


def field_problems(
    where: str,
    kind: str,
    fields: Mapping[str, Any],
    prompts: Mapping[str, str],
    targets: frozenset[str] = DEFAULT_TRANSFER_TARGETS,
    queues: frozenset[str] = frozenset({"12345"}),
) -> list[str]:
    """What the values of a node's fields mean; ``fields`` holds only fields of the right type."""
    problems: list[str] = []
    for prompt_field in PROMPT_FIELDS:
        if prompt_field in fields and fields[prompt_field] not in prompts:
            problems.append(f"{where}: prompt {fields[prompt_field]!r} has no text under 'prompts'")
    for name, low, high in _RANGES:
        if name in fields and not low <= fields[name] <= high:
            problems.append(f"{where}: '{name}' must be an integer {low}..{high}")
    if kind == "transfer" and "target" in fields and fields["target"] not in targets:
        problems.append(
            f"{where}: transfer target {fields['target']!r} is not a dialplan target ({', '.join(sorted(targets))})"
        )
    if kind in ("queue", "callback_request") and "queue" in fields and fields["queue"] not in queues:
        problems.append(f"{where}: queue {fields['queue']!r} is not configured ({', '.join(sorted(queues))})")
    if kind == "menu" and "options" in fields:
        if not fields["options"]:
            problems.append(f"{where}: 'options' must map keys to nodes")
        problems.extend(_key_map_problems(where, "option key", fields["options"], DIGITS, "one DTMF key"))
        for key in fields["options"]:
            if key_text(key) in ("*", "0"):
                problems.append(f"{where}: key {key_text(key)!r} is reserved ('*' repeats, '0' reaches an agent)")
    if kind == "prompt" and "keys" in fields:
        problems.extend(_key_map_problems(where, "key", fields["keys"], DIGITS, "one DTMF key"))
    if kind == "input":
        if fields.get("terminator", "#") not in ("#", "*", ""):
            problems.append(f"{where}: terminator must be '#', '*' or ''")
        if fields.get("min_digits", 1) > fields.get("max_digits", 32):
            problems.append(f"{where}: min_digits is larger than max_digits")
    if kind == "survey_question":
        problems.extend(_survey_question_problems(where, fields))
    if kind in ("input", "order_status") and "variable" in fields and not is_name(fields["variable"]):
        problems.append(f"{where}: 'variable' must be a name (letters, digits, _)")
    if "choice" in fields and (not fields["choice"] or not is_one_line(fields["choice"])):
        problems.append(f"{where}: 'choice' must be one line of text (it goes into the agent's screen pop)")
    if kind == "caller_lookup" and fields.get("priority_list") == "":
        problems.append(f"{where}: 'priority_list' must name a caller list")
    if kind == "set" and "variables" in fields:
        problems.extend(_variables_problems(where, fields["variables"]))
    if kind == "branch" and "cases" in fields:
        cases = fields["cases"]
        if not cases:
            problems.append(f"{where}: 'cases' must be a list of {{when, next}}")
        for index, case in enumerate(cases):
            problems.extend(_case_problems(f"{where}: case {index + 1}", case))
    return problems


def _key_map_problems(
    where: str, what: str, mapping: Mapping[Any, Any], allowed: str, kind_of_key: str, leads_to: str = "a node name"
) -> list[str]:
    """``{key: value}`` maps of menus, prompts and survey answers: one key each, values are text."""
    problems = []
    seen: set[str] = set()
    for key, target in mapping.items():
        text = key_text(key)
        if text is None or text not in allowed:
            problems.append(f"{where}: {what} {key!r} is not {kind_of_key}")
        elif text in seen:
            problems.append(f"{where}: {what} {text!r} is given twice")
        else:
            seen.add(text)
        if not isinstance(target, str):
            problems.append(f"{where}: {what} {key!r} must lead to {leads_to} (text), not {describe(target)}")
    return problems


def _survey_question_problems(where: str, fields: Mapping[str, Any]) -> list[str]:
    from ..surveys.model import ANSWERS, NO_RESPONSE

    problems = []
    question = fields.get("question")
    if question is not None and question not in ANSWERS:
        problems.append(f"{where}: question must be one of {', '.join(ANSWERS)}")
    elif question is not None and "answers" in fields:
        answers = fields["answers"]
        if not answers:
            problems.append(f"{where}: 'answers' must map keys to answers")
        problems.extend(
            _key_map_problems(where, "answer key", answers, "123456789", "one of the keys 1-9", leads_to="an answer")
        )
        for answer in answers.values():
            if isinstance(answer, str) and (answer not in ANSWERS[question] or answer == NO_RESPONSE):
                choices = ", ".join(a for a in ANSWERS[question] if a != NO_RESPONSE)
                problems.append(f"{where}: answer {answer!r} is not an answer to {question} ({choices})")
    decline = fields.get("decline_key")
    if (decline is None) != (fields.get("decline_next") is None):
        problems.append(f"{where}: 'decline_key' and 'decline_next' go together")
    elif decline is not None and str(decline) not in "123456789":
        problems.append(f"{where}: decline_key {decline!r} is not one of the keys 1-9")
    elif decline is not None and isinstance(fields.get("answers"), Mapping) and str(decline) in {
            key_text(k) for k in fields["answers"]}:
        problems.append(f"{where}: decline_key {decline!r} is also an answer key")
    return problems


def _variables_problems(where: str, variables: Mapping[Any, Any]) -> list[str]:
    problems = []
    for name, value in variables.items():
        if not is_name(name):
            problems.append(f"{where}: variables: {describe(name)} is not a name (letters, digits, _)")
        elif name in ENGINE_VARIABLES:
            problems.append(f"{where}: variables: {name!r} is kept by the engine and cannot be set")
        elif name == "priority" and not (is_int(value) and 0 <= value <= 100):
            problems.append(f"{where}: variables: 'priority' must be an integer 0..100, not {describe(value)}")
        elif not is_scalar(value):
            problems.append(f"{where}: variables: {name!r} must be text, a number or true/false, not {describe(value)}")
        elif isinstance(value, str) and not is_one_line(value):
            problems.append(f"{where}: variables: {name!r} must be one line of text (a channel variable's value)")
    return problems


def _case_problems(where: str, case: Any) -> list[str]:
    """One branch case: ``{when: {condition: value, ...}, next: node}``."""
    if not isinstance(case, Mapping) or set(case) != {"when", "next"}:
        return [f"{where} must have exactly 'when' (a mapping) and 'next'"]
    problems = []
    if not isinstance(case["next"], str):
        problems.append(type_problem(where, "next", TEXT, case["next"]))
    when = case["when"]
    if not isinstance(when, Mapping):
        return problems + [f"{where} must have exactly 'when' (a mapping) and 'next'"]
    unknown = [key for key in when if key not in CONDITION_TYPES]
    if unknown:
        problems.append(f"{where} has unknown condition(s) {', '.join(sorted(map(str, unknown)))}")
    for key, value in when.items():
        expected = CONDITION_TYPES.get(key)
        if expected is None:
            continue
        if not expected.accepts(value):
            problems.append(type_problem(where, key, expected, value))
        elif key == "days" and not is_days(value):
            problems.append(f"{where}: days must be workdays, holidays or [mon, ...]")
        elif key == "time" and not is_time_window(value):
            problems.append(f"{where}: time must look like '08:00-18:00'")
        elif key in ("setting", "caller_in") and not value:
            problems.append(f"{where}: '{key}' must not be empty")
        elif key == "var_set" and not is_name(value):
            problems.append(f"{where}: 'var_set' must be a variable name (letters, digits, _)")
        elif key == "var":
            for name, expected_value in value.items():
                if not is_name(name) or not is_scalar(expected_value):
                    problems.append(f"{where}: var must map variable names to text, numbers or true/false; "
                                    f"{describe(name)}: {describe(expected_value)} is not")
        elif key == "queue_wait_over" and value < 0:
            problems.append(f"{where}: 'queue_wait_over' must be a number of seconds, 0 or more")
    return problems


def speech_problems(source: str, speech: Any) -> list[str]:
    """``settings.speech``: language → question → {spoken word: answer} (grammar of the spoken fallback)."""
    if speech is None:
        return []
    from ..surveys.model import ANSWERS, NO_RESPONSE

    if not isinstance(speech, Mapping):
        return [f"{source}: settings.speech must map languages to questions"]
    problems = []
    for language, questions in speech.items():
        if not isinstance(questions, Mapping):
            problems.append(f"{source}: settings.speech.{language} must map questions to words")
            continue
        for question, words in questions.items():
            if question not in ANSWERS or not isinstance(words, Mapping) or not words:
                problems.append(f"{source}: settings.speech.{language}.{question}: unknown question or no words")
                continue
            for word, answer in words.items():
                is_word = isinstance(word, str) and word.strip()
                if not is_word or answer not in ANSWERS[question] or answer == NO_RESPONSE:
                    problems.append(f"{source}: settings.speech.{language}.{question}: {word!r} → {shown(answer)} "
                                    "is not a word and an answer")
    return problems
