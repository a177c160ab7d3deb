"""CPU per scored event, without the broker: scoring's consumer driven directly.

Builds the events of `bench/scoring_bench.py` (captured leads, then their opens,
clicks and replies), encodes them as the broker would hand them over, and feeds
them to the consumer `leadflow serve scoring` builds, in batches of a fixed size,
on a fresh SQLite file or PostgreSQL schema. Reports the process CPU time
(`time.process_time`) per event, which the other processes on the machine barely
disturb, and the time spent in Python's garbage collector; `--profile` prints a
cProfile of the run.

    python bench/scoring_cpu.py [--backend sqlite|postgres] [--events 20000]
        [--batch 500] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.consumer_bench import settings_for  # noqa: E402
from bench.scoring_bench import make_events  # noqa: E402
from leadflow import registry  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.kafka.consumer import EventConsumer  # noqa: E402
from tests.records import record_of  # noqa: E402


class _GcTimer:
    """Wall time spent in the garbage collector while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


async def measure(
    backend: str, events: int, batch: int, profile: cProfile.Profile | None
) -> dict[str, float]:
    records = [record_of(e, i) for i, e in enumerate(make_events(events, 5))]
    with tempfile.TemporaryDirectory() as tmpdir:
        settings = settings_for(backend, Path(tmpdir))
        app = registry.app_factory("scoring")(settings)
        runtime = app.state.runtime
        await upgrade(runtime.db, registry.migrations_dir("scoring"))
        consumer = EventConsumer(
            service="scoring",
            group_id="bench",
            uow_factory=runtime.uow,
            settings=settings,
            **runtime._consumer_specs[0],
        )
        gc_timer = _GcTimer()
        gc.callbacks.append(gc_timer)
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            if profile is not None:
                profile.enable()
            for start in range(0, len(records), batch):
                await consumer.process(records[start : start + batch])
            if profile is not None:
                profile.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            gc.callbacks.remove(gc_timer)
            await runtime.db.dispose()
    n = len(records)
    return {
        "cpu_us_per_event": round(cpu * 1e6 / n, 1),
        "wall_us_per_event": round(wall * 1e6 / n, 1),
        "gc_us_per_event": round(gc_timer.seconds * 1e6 / n, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    for _ in range(args.repeat):
        result = asyncio.run(measure(args.backend, args.events, args.batch, profile))
        print(args.backend, result, flush=True)
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_stats(40)


if __name__ == "__main__":
    main()
