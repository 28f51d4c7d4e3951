#!/usr/bin/env python3
"""Verifies webhook requests as a receiver would, with the Standard Webhooks library.

usage: verify-webhook.py SECRET [--key-bytes] [--late SECONDS] < hooks.ndjson
Reads the requests httpd.py recorded (one JSON line each: headers and body) and prints one
line for each: "ok" or the library's refusal.  Exits 1 when any was refused.
  --key-bytes     SECRET's own bytes are the key (for secrets without whsec_)
  --late SECONDS  verify as if received SECONDS after the request's webhook-timestamp
Run it with the venv's python that scripts/setup --test makes (helpers.bash: $WEBHOOK_PYTHON).
"""
import argparse
import datetime
import json
import sys

from standardwebhooks import webhooks


def clock_at(seconds):
    """A datetime class whose now() is the given Unix time, for the library's age check."""

    class Clock(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.fromtimestamp(seconds, tz)

    return Clock


def main():
    p = argparse.ArgumentParser()
    p.add_argument("secret")
    p.add_argument("--key-bytes", action="store_true")
    p.add_argument("--late", type=float)
    a = p.parse_args()
    hook = webhooks.Webhook(a.secret.encode() if a.key_bytes else a.secret)
    refused = 0
    for line in sys.stdin:
        request = json.loads(line)
        if a.late is not None:
            sent = int(request["headers"]["webhook-timestamp"])
            webhooks.datetime = clock_at(sent + a.late)
        try:
            hook.verify(request["body"], request["headers"])
            print("ok")
        except webhooks.WebhookVerificationError as e:
            print(e)
            refused = 1
    sys.exit(refused)


if __name__ == "__main__":
    main()
