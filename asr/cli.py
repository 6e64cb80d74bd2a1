"""``hotline-asr``: transcribe a file, run a worker, fetch a model.

    hotline-asr transcribe FILE [--grammar 네 --grammar 아니요] [--json]
    hotline-asr worker [--consumer NAME]
    hotline-asr model fetch cn [--dest DIR] [--url URL --sha256 HEX] [--timeout S]

Configuration as for the gateway (``--config``/``HOTLINE_CONFIG``, ``HOTLINE_ASR_*``).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from gateway.config import ConfigError, load_config

from .audio import AudioError
from .engine import EngineError
from .models import FetchError, fetch_model


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline-asr", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="TOML configuration file (default: $HOTLINE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("transcribe", help="transcribe a WAV file and print the text (or JSON)")
    tr.add_argument("file")
    tr.add_argument("--model", help="model directory (default: asr.model_path)")
    tr.add_argument("--grammar", action="append", help="restrict recognition to these phrases (repeatable)")
    tr.add_argument("--json", action="store_true", help="print words, times, confidences as JSON")
    wk = sub.add_parser("worker", help="consume transcription jobs from Redis (runs until SIGTERM)")
    wk.add_argument("--consumer", help="consumer name (default: <host>-<pid>)")
    md = sub.add_parser("model", help="model management")
    msub = md.add_subparsers(dest="model_command", required=True)
    fe = msub.add_parser("fetch", help="download an official Vosk model (sha256-checked) and unpack it")
    fe.add_argument("lang", help="language key, e.g. cn")
    fe.add_argument("--dest", help="directory to unpack into (default: asr.models_dir)")
    fe.add_argument("--url", help="another URL (file:// works) — needs --sha256")
    fe.add_argument("--sha256")
    fe.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hotline-asr: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "transcribe":
            return _transcribe(config, args)
        if args.command == "worker":
            return _worker(config, args)
        return _fetch(config, args)
    except (EngineError, AudioError, FetchError) as exc:
        print(f"hotline-asr: {exc}", file=sys.stderr)
        return 1


def _transcribe(config, args) -> int:
    from .engine import VoskEngine

    engine = VoskEngine(args.model or config.asr.model_path)
    transcript = engine.transcribe_file(args.file, grammar=args.grammar)
    if args.json:
        print(json.dumps(transcript.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(transcript.text)
    return 0


def _fetch(config, args) -> int:
    if args.url and not args.sha256:
        print("hotline-asr: --url needs --sha256", file=sys.stderr)
        return 2
    path = fetch_model(args.lang, args.dest or config.asr.models_dir, url=args.url, sha256=args.sha256,
                       timeout=args.timeout)
    print(f"model unpacked to {path}\nset asr.model_path = \"{path}\" (or HOTLINE_ASR_MODEL_PATH)")
    return 0


def _worker(config, args) -> int:
    from twisted.internet import reactor

    from gateway.logs import start_logging
    from gateway.storage.redis_clients import SentinelError, check_sentinels

    from .service import run_worker

    start_logging(config.log.level, config.log.format)
    try:
        check_sentinels(config.redis)  # before the reactor runs (it blocks): wrong sentinels stop the start
    except SentinelError as exc:
        print(f"hotline-asr: worker cannot start: {exc}", file=sys.stderr)
        return 1
    status = {"code": 0}

    def start() -> None:
        try:
            finished = run_worker(config, reactor, consumer=args.consumer)
        except Exception as exc:  # noqa: BLE001 — a start-up error ends the process with a message
            print(f"hotline-asr: worker cannot start: {exc}", file=sys.stderr)
            status["code"] = 1
            reactor.stop()
            return
        finished.addErrback(lambda f: status.update(code=1))

    reactor.callWhenRunning(start)
    reactor.run()
    return status["code"]
