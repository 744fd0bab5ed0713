"""`warden keys`: make API keys and their stored form. A key is shown once, when it is made;
the config keeps only its hash (`auth.keys[].hash`, `auth.admin_keys[].hash`)."""

from __future__ import annotations

import argparse
import sys

from warden.tenancy.keys import key_hash, new_key

COMMAND = "warden keys"


def add_commands(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="make API keys (client or admin) and their hashes")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    new = actions.add_parser("new", help="print a new key and the hash to put in the config "
                             "(the key is not stored anywhere: keep it now)")
    new.set_defaults(command=_new)
    hashed = actions.add_parser("hash", help="print the hash of a key read from standard "
                                "input (so it stays out of the shell's history)")
    hashed.set_defaults(command=_hash)


def _new(args: argparse.Namespace) -> int:
    key = new_key()
    print(f"key:  {key}\nhash: {key_hash(key)}")
    return 0


def _hash(args: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip()
    if not key:
        print(f"{COMMAND} hash: no key on standard input (echo \"$KEY\" | warden keys hash)",
              file=sys.stderr)
        return 2
    print(key_hash(key))
    return 0
