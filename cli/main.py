"""The ``wardwatch`` command.

Heavy imports (Faust, torch) happen inside the subcommand that needs them, so that
``wardwatch news2`` starts fast and the worker never imports the trainer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from wardwatch.settings import Settings


def _setup_logging(settings: Settings, verbose: bool = False) -> None:
    from wardwatch.logs import setup_logging

    level = logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), None)
    if level is None:  # "warn" is Faust's spelling
        level = logging.WARNING
    setup_logging(level, json_lines=settings.log_json)


# ---- worker ---------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from agents.worker import Worker
    from wardwatch import heap
    from wardwatch.errors import ConfigError
    from wardwatch.topics import ensure_topics
    from wardwatch.transport import check_safe_start

    if args.web_port:
        settings = settings.model_copy(update={"web_port": args.web_port})
    if not settings.kafka_url or not settings.redis_url:
        print(
            "wardwatch worker needs WARDWATCH_KAFKA_URL and WARDWATCH_REDIS_URL "
            "(or run `wardwatch demo`, which starts an embedded stack)",
            file=sys.stderr,
        )
        return 2
    try:
        # refused before anything connects: an unsafe web server, wrong Redis credentials
        check_safe_start(settings)
        asyncio.run(_check_redis(settings))
        ensure_topics(settings)
        worker = Worker(settings)
    except ConfigError as exc:
        print(f"wardwatch worker: {exc}", file=sys.stderr)
        return 2
    sys.argv = [
        "wardwatch",
        "worker",
        "--loglevel",
        settings.log_level,
        "--web-port",
        str(settings.web_port),
        "--web-host",
        settings.web_host,
    ]
    heap.settle()  # start-up done: long-lived objects out of the collector's way
    worker.app.main()
    return 0


async def _check_redis(settings: Settings) -> None:
    """Authenticate to Redis and touch one key of the store's namespace: ConfigError when
    the credentials or the ACL are wrong; a server not reachable yet is left to the
    worker's retries."""
    from redis.exceptions import RedisError

    from wardwatch.store import RedisStateStore

    store = RedisStateStore.from_settings(settings)
    try:
        await store.check_access()
    except (RedisError, OSError) as exc:  # unreachable now: the worker retries as usual
        logging.getLogger("wardwatch.worker").warning(
            "Redis not reachable at start-up (%s); retrying while running", type(exc).__name__
        )
    finally:
        await store.close()


# ---- simulate -------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from simulator.publish import PublishStats, publish_simulation
    from wardwatch.topics import ensure_topics

    if not settings.kafka_url:
        print("wardwatch simulate needs WARDWATCH_KAFKA_URL", file=sys.stderr)
        return 2
    ensure_topics(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stats = PublishStats()
    try:
        publish_simulation(
            settings,
            patients=args.patients,
            speed=args.speed,
            hours=args.hours,
            seed=args.seed,
            stop=stop,
            stats=stats,
        )
    except KeyboardInterrupt:
        stop.set()
    print(json.dumps(stats.__dict__))
    return 0


# ---- broker ---------------------------------------------------------------------------
def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from wardwatch.stack import embedded_broker

    workdir = Path(args.workdir)
    broker = embedded_broker(workdir, port=args.port)
    broker.start()
    print(f"WARDWATCH_KAFKA_URL=kafka://127.0.0.1:{broker.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while broker.running and not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


# ---- demo -----------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from cli.demo import run_demo

    return run_demo(
        settings,
        patients=args.patients,
        duration_s=args.duration,
        speed=args.speed,
        summary_json=Path(args.summary_json) if args.summary_json else None,
        workers=args.workers,
        seed=args.seed,
    )


# ---- context --------------------------------------------------------------------------
def cmd_context(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from wardwatch.schemas import PatientContext
    from wardwatch.topics import ensure_topics, producer

    if not settings.kafka_url:
        print("wardwatch context needs WARDWATCH_KAFKA_URL", file=sys.stderr)
        return 2
    ctx = PatientContext(
        patient_id=args.patient_id,
        ts=datetime.now(UTC),
        age_band=args.age_band,
        spo2_scale=args.spo2_scale,
        conditions=args.condition or [],
        ward=args.ward,
        discharged=args.discharged,
    )
    ensure_topics(settings)
    prod = producer(settings)
    prod.send(
        settings.topics.patient_context, key=ctx.patient_id, value=ctx.model_dump_json().encode()
    )
    prod.flush(10)
    prod.close(5)
    print(ctx.model_dump_json())
    return 0


# ---- trainer (offline; imports torch) -------------------------------------------------
def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    if args.operating_points_only:
        from cli.train_export import run_operating_points_only

        if args.export:
            print(
                "wardwatch train: --operating-points-only and --export exclude each other",
                file=sys.stderr,
            )
            return 2
        return run_operating_points_only(settings, base=args.base, promote=args.promote)
    if args.export:
        from cli.train_export import run_train_export

        return run_train_export(
            settings,
            args.export,
            base=args.base,
            task=args.task,
            seed=args.seed,
            test_fraction=args.test_fraction,
            n_boot=args.bootstrap,
            horizon_h=args.horizon_h,
            promote=args.promote,
        )
    from trainer.workflows import train

    result = train(
        args.quick,
        settings.resolved_model_registry(),
        args.seed,
        name=settings.model_name,
        settings=settings,  # the alert budget and sensitivity floor of the operating points
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_train_imaging(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.imaging.train import config_for, train_imaging

    result = train_imaging(
        settings.resolved_model_registry(),
        config_for(args.quick, args.seed),
        promote=args.promote,
    )
    print(json.dumps(result, indent=2, default=str))
    if not result.get("registered"):
        return 1
    if args.promote and not (result.get("promotion") or {}).get("promoted"):
        return 1
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import load_metadata
    from trainer.report import report_html
    from trainer.workflows import evaluate

    registry = settings.resolved_model_registry()
    result = evaluate(
        registry, args.model, name=settings.model_name, against_promoted=args.against_promoted
    )
    text = json.dumps(result, indent=2, default=str)
    if args.html:
        meta = load_metadata(registry, settings.model_name, result["version"])
        Path(args.html).write_text(report_html(result["metrics"], meta, result.get("external")))
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


def cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.workflows import promote

    result = promote(
        settings.resolved_model_registry(),
        args.version,
        name=settings.model_name,
        alert_budget=args.alert_budget,
        pages_budget=settings.alert_budget_pages_per_patient_day,
        high_fraction=settings.alert_budget_high_fraction,
        sensitivity_floor=settings.sensitivity_floor,
        settings=settings if settings.kafka_url else None,
        min_shadow_h=settings.promotion_min_shadow_h,
    )
    print(json.dumps(result, indent=2, default=str))
    return 0 if result.get("promoted") else 1


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.workflows import list_models

    print(json.dumps(list_models(settings.resolved_model_registry()), indent=2, default=str))
    return 0


# ---- score ----------------------------------------------------------------------------
def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    from cli.score import run_score

    return run_score(sys.stdin.buffer, sys.stdout, settings, args.model)


# ---- imaging --------------------------------------------------------------------------
def cmd_imaging(args: argparse.Namespace, settings: Settings) -> int:
    from cli.imaging import cmd_imaging as run

    return run(args, settings)


# ---- validate -------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from cli.validate import run_validate, run_validate_shadow

    if args.shadow:
        return run_validate_shadow(
            settings,
            version=args.model,
            since=args.since,
            until=args.until,
            json_path=args.json,
            html_path=args.html,
            horizon_h=args.horizon_h,
        )
    if not args.export:
        print("wardwatch validate: --export (or --shadow) is required", file=sys.stderr)
        return 2
    return run_validate(
        settings,
        args.export,
        version=args.model,
        out_dir=args.out,
        json_path=args.json,
        html_path=args.html,
        n_boot=args.bootstrap,
        seed=args.seed,
        horizon_h=args.horizon_h,
    )


# ---- bench ----------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from benchmarks.run import main as bench_main

    return bench_main(args.bench_args)


# ---- news2 ----------------------------------------------------------------------------
def cmd_news2(args: argparse.Namespace, settings: Settings) -> int:
    from cli.news2 import run_news2

    return run_news2(sys.stdin.buffer, sys.stdout, settings)


# ---- access control -------------------------------------------------------------------
def cmd_access(args: argparse.Namespace, settings: Settings) -> int:
    from cli.access import run_access

    return run_access(args, settings)


# ---- settings -------------------------------------------------------------------------
def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    from wardwatch.settings import reference_markdown
    from wardwatch.transport import redact_url

    if args.markdown:
        sys.stdout.write(reference_markdown())
    else:  # the effective values, secrets masked (passwords inside URLs too)
        values = settings.model_dump(mode="json")
        for name in ("kafka_url", "redis_url", "webhook_url"):
            if values.get(name):
                values[name] = redact_url(values[name])
        print(json.dumps(values, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wardwatch", description="Real-time early warning for hospital patients."
    )
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the whole system on the embedded stack")
    d.add_argument("--patients", type=int, default=50)
    d.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    d.add_argument("--speed", type=float, default=1800.0, help="simulated seconds per second")
    d.add_argument("--summary-json", default=None)
    d.add_argument("--workers", type=int, default=1)
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(fn=cmd_demo)

    w = sub.add_parser("worker", help="one Faust worker against the configured services")
    w.add_argument("--web-port", type=int, default=None)
    w.set_defaults(fn=cmd_worker)

    s = sub.add_parser("simulate", help="publish simulated bedside vitals")
    s.add_argument("--patients", type=int, default=50)
    s.add_argument("--speed", type=float, default=60.0)
    s.add_argument("--hours", type=float, default=48.0)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(fn=cmd_simulate)

    b = sub.add_parser("broker", help="run the embedded Kafka-wire broker only")
    b.add_argument("--port", type=int, default=9092)
    b.add_argument("--workdir", default=os.environ.get("TMPDIR", "/tmp") + "/wardwatch-broker")
    b.set_defaults(fn=cmd_broker)

    c = sub.add_parser("context", help="publish a patient's context (ADT, SpO2 scale)")
    c.add_argument("patient_id")
    c.add_argument("--spo2-scale", type=int, choices=[1, 2], default=None)
    c.add_argument("--age-band", choices=["18-39", "40-64", "65-79", "80+"], default=None)
    c.add_argument("--condition", action="append", help="repeatable, e.g. --condition copd")
    c.add_argument("--ward", default=None)
    c.add_argument("--discharged", action="store_true")
    c.set_defaults(fn=cmd_context)

    t = sub.add_parser("train", help="train a deterioration model (offline, needs [trainer])")
    t.add_argument("--quick", action="store_true", help="small cohort, < 2 min on 2 cores")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--source",
        choices=["simulation", "kafka"],
        default="simulation",
        help="simulated cohort, or the vitals + outcomes the system accumulated in Kafka",
    )
    t.add_argument(
        "--export",
        default=None,
        help="recalibrate a registered version on this export (YAIB task or generic) instead",
    )
    t.add_argument(
        "--operating-points-only",
        action="store_true",
        help="choose a registered version's operating points again under today's budgets, "
        "without retraining, and register the result as a new version",
    )
    t.add_argument(
        "--base",
        default=None,
        help="with --export or --operating-points-only: the version (default: promoted)",
    )
    t.add_argument("--task", default=None, help="with --export: the task, if it has several")
    t.add_argument(
        "--test-fraction", type=float, default=0.3, help="with --export: patients held out"
    )
    t.add_argument("--bootstrap", type=int, default=1000, help="with --export: resamples")
    t.add_argument("--horizon-h", type=float, default=12.0, help="generic format's horizon")
    t.add_argument(
        "--promote",
        action="store_true",
        help="with --export or --operating-points-only: promote if the gate passes",
    )
    t.set_defaults(fn=cmd_train)

    ti = sub.add_parser(
        "train-imaging",
        help="train the lung-nodule CT CNN on synthetic volumes (offline, needs [trainer])",
    )
    ti.add_argument(
        "--quick", action="store_true", help="small cohort: 160 training volumes, 2 epochs"
    )
    ti.add_argument("--seed", type=int, default=0)
    ti.add_argument("--promote", action="store_true", help="promote if the gate passes")
    ti.set_defaults(fn=cmd_train_imaging)

    ev = sub.add_parser("evaluate", help="evaluate a registered model against NEWS2")
    ev.add_argument("--model", default=None, help="version (default: promoted)")
    ev.add_argument("--json", default=None, help="write the report JSON here")
    ev.add_argument("--html", default=None, help="write the report page (with plots) here")
    ev.add_argument(
        "--against-promoted",
        action="store_true",
        help="also score the promoted version on this version's test patients and store the "
        "paired comparison (vs_promoted.json) that the promotion gate ranks them by",
    )
    ev.set_defaults(fn=cmd_evaluate)

    pr = sub.add_parser("promote", help="promote a version if it passes the gate")
    pr.add_argument("version")
    pr.add_argument(
        "--alert-budget",
        type=float,
        default=1.0,
        help="alerts per patient-day, for a version without operating points",
    )
    pr.set_defaults(fn=cmd_promote)

    ms = sub.add_parser("models", help="list registered model versions")
    ms.set_defaults(fn=cmd_models)

    sc = sub.add_parser("score", help="replay vitals JSON lines through the worker's scoring")
    sc.add_argument("--model", default=None, help="registry version (default: promoted)")
    sc.set_defaults(fn=cmd_score)

    from cli.imaging import add_parsers as imaging_parsers

    imaging_parsers(sub, cmd_imaging)

    va = sub.add_parser("validate", help="silent mode: replay an export, report vs outcomes")
    va.add_argument("--export", default=None, help="export folder (YAIB task(s) or generic)")
    va.add_argument(
        "--shadow", action="store_true", help="live vs shadow alerts on Kafka, vs outcomes"
    )
    va.add_argument("--since", default=None, help="--shadow: window start (ISO time)")
    va.add_argument("--until", default=None, help="--shadow: window end (ISO time)")
    va.add_argument("--model", default=None, help="registry version (default: promoted)")
    va.add_argument("--out", default=None, help="write report.json and report.html here")
    va.add_argument("--json", default=None, help="write the report JSON here")
    va.add_argument("--html", default=None, help="write the report page here")
    va.add_argument("--bootstrap", type=int, default=1000, help="resamples of patients")
    va.add_argument("--seed", type=int, default=0)
    va.add_argument(
        "--horizon-h", type=float, default=12.0, help="generic format's (and --shadow's) horizon"
    )
    va.set_defaults(fn=cmd_validate)

    bench = sub.add_parser("bench", help="run benchmarks, print JSON", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(fn=cmd_bench)

    n = sub.add_parser("news2", help="score vitals JSON lines from stdin with NEWS2 and qSOFA")
    n.set_defaults(fn=cmd_news2)

    from cli.access import add_parsers as access_parsers

    access_parsers(sub, cmd_access)

    st = sub.add_parser("settings", help="print the effective settings (secrets masked)")
    st.add_argument(
        "--markdown", action="store_true", help="the reference table of every setting instead"
    )
    st.set_defaults(fn=cmd_settings)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    _setup_logging(settings, args.verbose)
    code = args.fn(args, settings)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
