"""Baseline: pyst2's own ``asterisk.fastagi`` server, with the minimal Python 3 fixes.

pyst2 0.5.1 ships ``asterisk/fastagi.py`` for Python 2. The fixes applied here,
and nothing more:
  * ``import SocketServer`` → an alias of Python 3's ``socketserver``;
  * the request handler gives ``asterisk.agi.AGI`` text-mode wrappers of the
    socket files (pyst2 writes ``str``);
  * pyst2's debug output to stderr goes to /dev/null.
The server is pyst2's choice: ``ForkingTCPServer`` (a process per call) with
socketserver's default listen backlog of 5. It runs the same 12-command script.
Each child appends its command round trips to --rtt-dir/<pid>.json.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socketserver
import sys
import time

sys.modules.setdefault("SocketServer", socketserver)

import asterisk.agi
import asterisk.fastagi

RTT_DIR = None


class TimedAGI(asterisk.agi.AGI):
    def execute(self, command, *args):
        started = time.perf_counter()
        try:
            return super().execute(command, *args)
        finally:
            self.rtts.append(time.perf_counter() - started)


class Handler(asterisk.fastagi.FastAGI):
    def handle(self):
        rfile = io.TextIOWrapper(self.rfile, encoding="utf-8", newline="\n")
        wfile = io.TextIOWrapper(self.wfile, encoding="utf-8", write_through=True)
        devnull = open(os.devnull, "w")
        agi = TimedAGI.__new__(TimedAGI)
        agi.rtts = []
        try:
            TimedAGI.__init__(agi, stdin=rfile, stdout=wfile, stderr=devnull)
            agi.answer()
            for index in range(4):
                agi.set_variable(f"BENCH_V{index}", f"value {index}")
            agi.get_variable("BENCH_V0")
            agi.get_variable("BENCH_V3")
            agi.stream_file("hotline/bench-beep")
            digit = agi.wait_for_digit(5000)
            agi.set_variable("BENCH_DIGIT", digit or "")
            agi.verbose("bench done", 1)
            agi.hangup()
        except asterisk.agi.AGIException as exc:
            sys.stderr.write(f"pyst2 baseline: {exc!r}\n")
        finally:
            if RTT_DIR:
                with open(os.path.join(RTT_DIR, f"{os.getpid()}-{time.monotonic_ns()}.json"), "w") as handle:
                    json.dump(agi.rtts, handle)


def main():
    global RTT_DIR
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=4575)
    parser.add_argument("--rtt-dir")
    args = parser.parse_args()
    RTT_DIR = args.rtt_dir
    socketserver.ForkingTCPServer.allow_reuse_address = True
    server = socketserver.ForkingTCPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
