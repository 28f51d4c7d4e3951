#!/usr/bin/env python3
"""The chaos run's plan, a pure function of its seed: what happens when.

usage: schedule.py SEED SECONDS FAULTS BATCHES TARGET...
Prints one tab-separated event a line, in time order (TIME: milliseconds from the start):
  TIME batch ROWS URLS_A_ROW BAD_ROWS MISSING_IMAGES HOOK(0|1)
  TIME fault TARGET DOWN PICK      TARGET killed with SIGKILL, restarted DOWN s later;
                                   PICK chooses among several (the process-batch to kill)
  TIME cancel PICK | TIME retry PICK   on the accepted batch number PICK mod their count
Batches come over the first 70% of the time, faults and operators' calls over the first 85%,
so that the rest is left for the last batches to end.  A target is never faulted again
while it is still planned down, and at most two targets are down at once.
"""
import random
import sys

MAX_DOWN = 6.0   # seconds: longer than the chaos run's --claim-idle, so that take-overs happen


def batches(rng, seconds, count):
    for _ in range(count):
        rows = rng.choice([1, 2, 3, 4, 6, 8, 12])
        kind = rng.random()
        bad = rng.randint(1, 2) if kind < 0.25 else 0
        missing = rng.randint(1, 2) if 0.25 <= kind < 0.5 else 0
        yield (round(rng.uniform(0, 0.7 * seconds) * 1000), "batch", rows, rng.choice([1, 2]),
               bad, missing, int(rng.random() < 0.7))


def faults(rng, seconds, count, targets):
    times = sorted(rng.uniform(2, 0.85 * seconds) for _ in range(count))
    down_until = {}
    for t in times:
        down_now = [name for name, until in down_until.items() if until > t]
        up = [name for name in targets if name not in down_now]
        if len(down_now) >= 2 and "process-batch" in targets:
            up = ["process-batch"]
        target = rng.choice(up)
        down = round(rng.uniform(0.5, MAX_DOWN), 1)
        if target != "process-batch":   # nothing to restart: its dispatcher runs it again
            down_until[target] = t + down
        yield (round(t * 1000), "fault", target, down, rng.randrange(1000))


def calls(rng, seconds, count):
    for _ in range(count):
        yield (round(rng.uniform(5, 0.85 * seconds) * 1000), rng.choice(["cancel", "retry", "retry"]),
               rng.randrange(1000))


def main():
    seed, seconds, nfaults, nbatches = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    targets = sys.argv[5:]
    rng = random.Random(seed)
    events = list(batches(rng, seconds, nbatches))
    events += faults(rng, seconds, nfaults, targets)
    events += calls(rng, seconds, max(1, nfaults // 8))
    events.sort(key=lambda e: e[0])
    for event in events:
        print("\t".join(str(field) for field in event))


if __name__ == "__main__":
    main()
