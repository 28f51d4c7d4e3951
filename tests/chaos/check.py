#!/usr/bin/env python3
"""The chaos run's verdict: waits for the batches to end, then checks the invariants with
clients of its own, not imgpipe's code: pymongo, boto3, the Standard Webhooks verifier (tests/lib/verify-webhook.py, run with the venv
python that --webhook-python names).

usage: check.py --home IMGPIPE_HOME --seed N --webhook-python PYTHON [--settle SECONDS] [--durable]
Reads what tests/chaos/run wrote in IMGPIPE_HOME/chaos (accepted.tsv, faults.tsv,
calls.tsv, hooks.ndjson) and the dispatchers' logs (IMGPIPE_HOME/log/dispatcher-*.log);
the stack's addresses come from the environment (imgpipe stack env).  Prints the summary
and PASS, or FAIL and every broken invariant with the ids involved; exits 1 on FAIL.
--durable: webhook delivery survives restarts, so a delivery given up is a failure too.
"""
import argparse
import collections
import datetime
import glob
import json
import os
import re
import subprocess
import sys
import time

import boto3
import botocore.config
import botocore.exceptions
import pymongo

ENDED = ("completed", "failed")
# The dispatcher's events that end a run (dispatch.c's run_ended).
RUN_ENDS = ("ended", "will_retry", "run_stopped", "last_attempt_failed", "handed_back", "ack_lost")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def read_hooks(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Run:
    def __init__(self, args):
        self.home, self.chaos = args.home, os.path.join(args.home, "chaos")
        self.pointed_at = set()     # the S3 keys of every output URL
        self.s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name=os.environ["AWS_REGION"],
                               config=botocore.config.Config(s3={"addressing_style": "path"}))
        self.durable, self.claim_idle = args.durable, args.claim_idle
        self.db = pymongo.MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=5000).get_default_database()
        self.webhook_python = args.webhook_python
        self.accepted = {row[0]: {"rows": int(row[1]), "urls": int(row[2]), "bad": int(row[3]),
                                  "missing": int(row[4]), "hook": row[5] == "1"}
                         for row in read_tsv(os.path.join(self.chaos, "accepted.tsv"))}
        self.broken = collections.defaultdict(list)   # invariant: [ids]
        self.notes = collections.defaultdict(list)    # the windows design.md 12.3 names
        self.batches = {}

    def load(self):
        self.batches = {b["_id"]: b for b in self.db.batches.find({"_id": {"$in": list(self.accepted)}})}
        self.hooks = read_hooks(os.path.join(self.chaos, "hooks.ndjson"))

    def endings(self, batch):
        """Every ending the batch went through: 0 to its `ending` (a retry adds one)."""
        return range(int(batch.get("ending", 0)) + 1)

    def hook_ids(self):
        """(batch, ending) -> the webhook-ids the receiver saw."""
        ids = collections.defaultdict(set)
        for hook in self.hooks:
            body = json.loads(hook["body"])
            ids[(body.get("batch_id"), int(body.get("ending", 0)))].add(hook["headers"].get("webhook-id"))
        return ids

    def given_up(self, batch, ending):
        """Whether the ending's delivery was given up: its last attempt recorded `gave_up`
        (durable delivery), or, inline, every delivery recorded undelivered."""
        deliveries = [d for d in batch.get("webhook_deliveries", []) if int(d.get("ending", 0)) == ending]
        if any(d.get("gave_up") for d in deliveries):
            return True
        return not self.durable and bool(deliveries) and not any(d.get("delivered") for d in deliveries)

    def deliveries_queued(self):
        """The deliveries durable delivery still holds in Redis (imgpipe:webhooks)."""
        out = subprocess.run(["redis-cli", "-u", os.environ["REDIS_URL"], "zcard", "imgpipe:webhooks"],
                             capture_output=True, text=True, check=False).stdout.strip()
        return int(out) if out.isdigit() else 0

    def waiting_for(self):
        """What has not ended yet: batches, and endings whose webhook has not arrived."""
        ids = self.hook_ids()
        open_batches = [i for i in self.accepted if self.batches.get(i, {}).get("status") not in ENDED]
        open_hooks = [f"{i}.{e}" for i, b in self.batches.items() if b.get("status") in ENDED and b.get("webhook_url")
                      for e in self.endings(b) if not ids[(i, e)] and not self.given_up(b, e)]
        return open_batches, open_hooks

    def settle(self, seconds):
        deadline = time.time() + seconds
        while True:
            try:
                self.load()
                open_batches, open_hooks = self.waiting_for()
            except pymongo.errors.PyMongoError as e:
                open_batches, open_hooks = [str(e)], []
            if not open_batches and not open_hooks and not self.deliveries_queued():
                time.sleep(2)   # a repeat still on its way
                self.load()
                return
            if time.time() > deadline:
                self.load()
                return
            time.sleep(1)

    def check_batches(self):
        for bid, want in self.accepted.items():
            batch = self.batches.get(bid)
            if batch is None:
                self.broken["accepted batch missing from the database"].append(bid)
                continue
            if batch.get("status") not in ENDED:
                self.broken["accepted batch never ended"].append(f"{bid} ({batch.get('status')})")
                continue
            self.check_products(bid, batch, want)

    def early_end(self, bid, batch):
        """The reason of an early end (a cancel, a job given up, a CSV found bad), or None."""
        claim = self.db.chunks.find_one({"_id": f"{bid}:{int(batch.get('ending', 0))}:end"}) or {}
        if claim.get("reason"):
            return claim["reason"]
        return batch.get("message") if batch.get("message") == "cancelled" else None

    def check_products(self, bid, batch, want):
        products = list(self.db.products.find({"batch_id": bid}))
        early = self.early_end(bid, batch)
        by_serial = collections.Counter(p["serial_no"] for p in products)
        for serial, n in by_serial.items():
            if n > 1:
                self.broken["product recorded more than once"].append(f"{bid} serial {serial} x{n}")
        if not early and len(products) != want["rows"]:
            self.broken["products lost"].append(f"{bid}: {len(products)} of {want['rows']}")
        done = failed = total = 0
        for p in products:
            errors = {e.get("index") for e in p.get("errors", [])}
            total += len(p["input_image_urls"])
            failed += len(p.get("errors", []))
            for index, url in enumerate(p["output_image_urls"]):
                if url:
                    done += 1
                    self.check_object(bid, p["serial_no"], url)
                elif index not in errors:
                    (self.notes if early else self.broken)["slot neither filled nor failed"].append(
                        f"{bid} serial {p['serial_no']} image {index}" + (f" (early end: {early})" if early else ""))
        progress = batch.get("progress", {})
        counted = {"rows_done": len(products), "images_total": total, "images_done": done, "images_failed": failed}
        stored = {k: progress.get(k, 0) for k in counted}
        if stored != counted:
            (self.notes if early else self.broken)["progress counters differ from the products"].append(
                f"{bid}: stored {stored}, products say {counted}")
        if not early and progress.get("rows_failed", 0) != want["bad"]:
            self.broken["rejected rows miscounted"].append(f"{bid}: {progress.get('rows_failed', 0)} of {want['bad']}")

    def check_object(self, bid, serial, url):
        prefix = os.environ["S3_PUBLIC_URL"].rstrip("/") + "/"
        if not url.startswith(prefix):
            self.broken["output URL outside the bucket"].append(f"{bid} serial {serial}: {url}")
            return
        key = url[len(prefix):]
        self.pointed_at.add(key)
        try:
            self.s3.head_object(Bucket=os.environ["S3_BUCKET"], Key=key)
        except botocore.exceptions.ClientError as e:
            self.broken["output object missing from S3"].append(f"{bid} serial {serial}: {url} ({e})")

    def check_storage(self):
        """Nothing in S3 that no product points at (an image uploaded, then its batch cancelled
        or given up before the record, stays as a note: content-addressed, any later batch
        of the same bytes reuses it), and no run folder left on this host."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["S3_BUCKET"], Prefix="images/")
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"] not in self.pointed_at:
                    self.notes["S3 object no product points at"].append(obj["Key"])
        tmp = os.path.join(self.home, "tmp")
        for name in sorted(os.listdir(tmp)) if os.path.isdir(tmp) else []:
            self.broken["run folder left in IMGPIPE_HOME/tmp"].append(name)

    def check_webhooks(self):
        verdicts = self.verify_signatures()
        for hook, verdict in zip(self.hooks, verdicts):
            if verdict != "ok":
                self.broken["webhook signature refused"].append(f"{hook['headers'].get('webhook-id')}: {verdict}")
        ids = self.hook_ids()
        for bid, batch in self.batches.items():
            if batch.get("status") not in ENDED or not batch.get("webhook_url"):
                continue
            for ending in self.endings(batch):
                seen = ids[(bid, ending)]
                if len(seen) > 1:
                    self.broken["one ending announced under several webhook-ids"].append(
                        f"{bid} ending {ending}: {sorted(seen)}")
                elif not seen and self.given_up(batch, ending):
                    (self.broken if self.durable else self.notes)["webhook given up (webhook_deliveries)"].append(
                        f"{bid} ending {ending}")
                elif not seen:
                    self.broken["ending never announced"].append(f"{bid} ending {ending}")
        for (bid, ending), seen in ids.items():
            if bid not in self.accepted:
                self.broken["webhook for a batch never accepted"].append(f"{bid} ending {ending}")

    def verify_signatures(self):
        lines = "".join(json.dumps(h) + "\n" for h in self.hooks)
        out = subprocess.run([self.webhook_python, os.path.join(ROOT, "tests/lib/verify-webhook.py"),
                              os.environ["WEBHOOK_SECRET"], "--key-bytes", "--late", "1"],
                             input=lines, capture_output=True, text=True, check=False)
        return out.stdout.splitlines()

    def check_runs(self):
        """No two runs of one job at once: each run's span, from its dispatcher's `started`
        (half a lease later for a take-over, which waits that long) to the last line that
        names it (its own or its dispatcher's end of it), or to its dispatcher's SIGKILL,
        never meets another run's of the same job."""
        kills = {}
        start = time.time()
        for row in read_tsv(os.path.join(self.chaos, "faults.tsv")):
            if row[1].startswith("dispatcher-"):
                kills[os.path.join(self.home, row[3])] = float(row[0])
        base = float(open(os.path.join(self.chaos, "started")).read()) if os.path.exists(
            os.path.join(self.chaos, "started")) else start
        spans = {}
        for log in glob.glob(os.path.join(self.home, "log", "dispatcher-*.log")):
            killed_at = base + kills[log] if log in kills else None
            open_runs = {}
            for line in open(log, encoding="utf-8", errors="replace"):
                fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))
                if "ts" not in fields or "batch" not in fields:
                    continue
                at = datetime.datetime.strptime(fields["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                job = (fields["batch"], fields.get("chunk", "plan"))
                run = fields.get("run")
                m = re.search(r"run (\d+)", fields.get("msg", ""))
                if fields.get("stage") == "dispatch" and fields.get("event") in ("started", "give_up") and m:
                    run = m.group(1)
                    # a take-over (attempt 2 on) waits half a lease before it does anything
                    attempt = re.search(r"attempt (\d+)", fields["msg"])
                    begins = at + (self.claim_idle / 2 if attempt and int(attempt.group(1)) > 1 else 0)
                    spans[run] = [job, begins, begins, log]
                    open_runs[job] = run
                elif fields.get("event") in RUN_ENDS and fields.get("stage") == "dispatch" and job in open_runs:
                    spans[open_runs.pop(job)][2] = at   # its dispatcher saw it end
                if run in spans:
                    spans[run][2] = max(spans[run][2], at)
            for run in open_runs.values():
                spans[run][2] = killed_at if killed_at else start
        by_job = collections.defaultdict(list)
        for run, (job, begin, end, _) in spans.items():
            by_job[job].append((begin, end, run))
        for job, runs in by_job.items():
            runs.sort()
            for (b1, e1, r1), (b2, e2, r2) in zip(runs, runs[1:]):
                if b2 < e1:
                    self.broken["two runs of one job at once"].append(
                        f"{job[0]} {job[1]}: run {r1} until +{e1 - base:.1f}s, run {r2} from +{b2 - base:.1f}s")
        return len(spans)

    def summary(self, seed, runs):
        faults = collections.Counter()
        skipped = collections.Counter()
        for row in read_tsv(os.path.join(self.chaos, "faults.tsv")):
            (skipped if row[3] == "skipped" else faults)[row[1]] += 1
        statuses = collections.Counter(b.get("status") for b in self.batches.values())
        products = images = 0
        for bid in self.accepted:
            for p in self.db.products.find({"batch_id": bid}, {"input_image_urls": 1}):
                products += 1
                images += len(p["input_image_urls"])
        refused = len(read_tsv(os.path.join(self.chaos, "refused.tsv")))
        calls = collections.Counter(f"{r[1]} {r[3]}" for r in read_tsv(os.path.join(self.chaos, "calls.tsv")))
        ids = self.hook_ids()
        print(f"seed {seed}")
        print(f"faults: {sum(faults.values())} injected: "
              + ", ".join(f"{t} {n}" for t, n in sorted(faults.items()))
              + (f"; skipped (target down or none running): {sum(skipped.values())}" if skipped else ""))
        print("operators' calls: " + (", ".join(f"{c} x{n}" for c, n in sorted(calls.items())) or "none"))
        print(f"batches: {len(self.accepted) + refused} submitted, {len(self.accepted)} accepted (202), "
              f"{refused} refused; ended: {statuses['completed']} completed, {statuses['failed']} failed, "
              f"{len(self.accepted) - statuses['completed'] - statuses['failed']} not ended")
        print(f"products: {products}, images: {images}, runs of jobs: {runs}")
        print(f"deliveries: {len(self.hooks)} webhook requests received, {len(ids)} endings announced, "
              f"{sum(len(s) for s in ids.values())} distinct webhook-ids; durable delivery: "
              f"{'yes' if self.durable else 'no'}")
        lost = len(self.broken.get("accepted batch never ended", [])) + len(
            self.broken.get("accepted batch missing from the database", []))
        duplicated = len(self.broken.get("product recorded more than once", [])) + len(
            self.broken.get("one ending announced under several webhook-ids", []))
        print(f"lost = {lost}, duplicated = {duplicated}")
        for name, ids_ in sorted(self.notes.items()):
            print(f"note (a window design.md 12.3 names): {name}: {len(ids_)}")
            for i in ids_[:20]:
                print(f"  {i}")
        for name, ids_ in sorted(self.broken.items()):
            print(f"BROKEN: {name}: {len(ids_)}")
            for i in ids_[:20]:
                print(f"  {i}")
        print("FAIL" if self.broken else "PASS")
        return 1 if self.broken else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--home", required=True)
    p.add_argument("--seed", required=True)
    p.add_argument("--settle", type=float, default=300)
    p.add_argument("--durable", action="store_true")
    p.add_argument("--webhook-python", required=True)
    p.add_argument("--claim-idle", type=float, required=True)
    a = p.parse_args()
    run = Run(a)
    run.settle(a.settle)
    run.check_batches()
    run.check_storage()
    run.check_webhooks()
    runs = run.check_runs()
    sys.exit(run.summary(a.seed, runs))


if __name__ == "__main__":
    main()
