"""The set of loaded flows, reloadable without disturbing calls in progress.

A call takes the flow object current when it starts and keeps it to the end;
``reload()`` validates the whole directory first and swaps only if every file
is good, so a broken edit on a live system changes nothing (it is logged and
counted, and the running version stays).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from ..agi.session import AgiSession
from .engine import FlowRunner
from .fastpath import FastPathRunner, compile_fast_path
from .loader import FlowError, load_flows
from .model import Flow

log = Logger()


class FlowLibrary:
    def __init__(self, directory: str, default_queue: str = "12345", on_load: Callable[[str], None] | None = None,
                 services: Any = None, survey: Any = None, fast_path: bool = False, prompt_dir: str = "hotline",
                 on_fast_path: Callable[[str], None] | None = None, caller_lookup: Any = None,
                 **loader_kwargs: Any) -> None:
        self.services = services
        #: run each flow's default path in two AGI round trips when it has one (gateway/flows/fastpath.py)
        self.fast_path = fast_path
        self.prompt_dir = prompt_dir
        self._on_fast_path = on_fast_path
        #: the fast path's caller look-up on the reactor (gateway/storage/caller_lookup.py), if any
        self.caller_lookup = caller_lookup
        self._fast: dict[str, FastPathRunner] = {}
        #: backend of the survey nodes (gateway.surveys.flow.SurveyFlowBackend); None outside a survey campaign
        self.survey = survey
        self.directory = directory
        self.default_queue = default_queue
        # the configured default queue is the queue flows may name (unless the caller says otherwise)
        self._loader_kwargs = {"queues": (default_queue,), **loader_kwargs}
        self._on_load = on_load or (lambda result: None)
        self.flows: dict[str, Flow] = {}
        self._runners: dict[str, FlowRunner] = {}
        self._install(load_flows(directory, **self._loader_kwargs))
        self._on_load("ok")

    def _install(self, flows: dict[str, Flow]) -> None:
        # one runner per loaded flow version, built at load time rather than per call
        runners = {name: FlowRunner(flow, self.default_queue, self.services, survey=self.survey)
                   for name, flow in flows.items()}
        fast = {}
        for name, runner in runners.items() if self.fast_path else ():
            plan, why = compile_fast_path(runner.flow, self.prompt_dir)
            if plan is not None:
                fast[name] = FastPathRunner(runner, plan, self._on_fast_path, self.caller_lookup)
            log.info("Flow {name}: fast path {state}", name=name, state="on" if plan is not None else f"off ({why})")
        self._runners, self._fast = runners, fast
        self.flows = flows

    def reload(self) -> bool:
        try:
            flows = load_flows(self.directory, **self._loader_kwargs)
        except FlowError as exc:
            self._on_load("error")
            log.error("Flow reload refused, still running the previous version:\n{problems}",
                      problems="\n".join(exc.problems))
            return False
        except Exception:  # the loader reports problems as FlowError; anything else is a bug, still not a swap
            self._on_load("error")
            log.failure("Flow reload failed, still running the previous version")
            return False
        old = {name: flow.version for name, flow in self.flows.items()}
        self._install(flows)
        self._on_load("ok")
        log.info("Flows reloaded: {versions} (was {old})",
                 versions={name: flow.version for name, flow in flows.items()}, old=old)
        return True

    def handler(self, name: str) -> Callable[[AgiSession], Any]:
        async def run(session: AgiSession) -> None:
            # bound at call start; a reload later does not touch this call
            runner = self._fast.get(name) or self._runners[name]
            await runner.run(session)

        return run

    def names(self) -> list[str]:
        return sorted(self.flows)
