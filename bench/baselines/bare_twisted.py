"""Baseline: the smallest correct FastAGI server on Twisted's LineOnlyReceiver.

Runs the same 12-command bench script as the gateway, with nothing else: no
call record, no metrics, no flow engine. Command round trips are kept in
memory and written to --rtt-file (then cleared) on SIGUSR1.

    python bench/baselines/bare_twisted.py --port 4574 --rtt-file /tmp/rtt.json

``--script FILE`` sends the command lines of FILE instead (bench/fastagi_flow_bench.py: the
gateway's two fast-path commands of the default flow).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import time

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver

SCRIPT = [
    b"ANSWER",
    b'SET VARIABLE "BENCH_V0" "value 0"',
    b'SET VARIABLE "BENCH_V1" "value 1"',
    b'SET VARIABLE "BENCH_V2" "value 2"',
    b'SET VARIABLE "BENCH_V3" "value 3"',
    b'GET VARIABLE "BENCH_V0"',
    b'GET VARIABLE "BENCH_V3"',
    b'STREAM FILE "hotline/bench-beep" ""',
    b'WAIT FOR DIGIT "5000"',
    None,  # SET VARIABLE BENCH_DIGIT <digit>
    b'VERBOSE "bench done" "1"',
    b"HANGUP",
]

RTTS: list[float] = []


class BareAgi(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 8192

    def connectionMade(self):
        self.in_header = True
        self.step = 0
        self.digit = ""

    def lineReceived(self, line):
        line = line.rstrip(b"\r")
        if self.in_header:
            if not line:
                self.in_header = False
                self.send()
            return
        if not line.startswith(b"200 "):
            if line == b"HANGUP":
                return
            self.transport.loseConnection()
            return
        RTTS.append(time.perf_counter() - self.sent_at)
        if self.step == 9 and SCRIPT[8:9] == [b'WAIT FOR DIGIT "5000"']:  # reply to WAIT FOR DIGIT
            value = line.split(b"result=", 1)[1].split(b" ", 1)[0]
            self.digit = chr(int(value)) if value.isdigit() and int(value) > 0 else ""
        if self.step >= len(SCRIPT):
            self.transport.loseConnection()
            return
        self.send()

    def send(self):
        command = SCRIPT[self.step]
        if command is None:
            command = b'SET VARIABLE "BENCH_DIGIT" "' + self.digit.encode() + b'"'
        self.step += 1
        self.sent_at = time.perf_counter()
        self.transport.write(command + b"\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=4574)
    parser.add_argument("--rtt-file")
    parser.add_argument("--script", help="a file of AGI command lines to send instead of the 12-command script")
    args = parser.parse_args()
    if args.script:
        with open(args.script, "rb") as handle:
            SCRIPT[:] = [line.rstrip(b"\n") for line in handle if line.strip()]
    factory = Factory.forProtocol(BareAgi)
    reactor.listenTCP(args.port, factory, backlog=1024, interface="127.0.0.1")

    def dump(*_):
        if args.rtt_file:
            with open(args.rtt_file + ".tmp", "w") as handle:
                json.dump(RTTS, handle)
            os.replace(args.rtt_file + ".tmp", args.rtt_file)
        RTTS.clear()

    def stop(*_):
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(dump))
    signal.signal(signal.SIGTERM, stop)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
