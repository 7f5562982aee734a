"""``elastiq models list | publish NAME VERSION | rollback NAME [--json]``: model versions.

``list`` shows every registered name with its versions (metrics, edge threshold, lineage
summary) and which is current; ``publish`` checks a version in the model store (every
file's sha256, parity of its ONNX graphs) and makes it current -- serving workers switch
to it between batches; ``rollback`` restores the version the last publish replaced.
A refused version exits 1 with the reason. No torch.
"""

from __future__ import annotations

import argparse
import json

from elastiq.modelstore import Versions, store_root
from elastiq.redisconn import redis_client
from elastiq.settings import Settings


def parse_args(argv):
    p = argparse.ArgumentParser(prog="elastiq models", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="names, versions, current")
    ls.add_argument("name", nargs="?")
    pub = sub.add_parser("publish", help="check a version and make it current")
    pub.add_argument("name")
    pub.add_argument("version")
    rb = sub.add_parser("rollback", help="restore the version the last publish replaced")
    rb.add_argument("name")
    for s in (ls, pub, rb):
        s.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    r = redis_client(Settings.from_env())
    try:
        versions = Versions(r, store_root())
        if args.action == "publish":
            out = versions.publish(args.name, args.version)
        elif args.action == "rollback":
            out = versions.rollback(args.name)
        else:
            names = [args.name] if args.name else versions.names()
            out = {n: {"current": versions.current(n), "history": versions.history(n),
                       "versions": versions.versions(n)} for n in names}
    finally:
        r.close()
    if args.json:
        print(json.dumps(out, indent=1))
    elif args.action == "list":
        for n, v in out.items():
            print(f"{n}  (current: {v['current'] or '-'})")
            for ver, s in v["versions"].items():
                m = s.get("metrics") or {}
                edge = s.get("edge") or {}
                mark = "*" if ver == v["current"] else " "
                print(f" {mark} {ver}  val_acc {m.get('val_accuracy')}  edge_val_acc {m.get('edge_val_accuracy')}"
                      f"  threshold {edge.get('threshold')}  base {(s.get('lineage') or {}).get('base')}")
    else:
        print(f"{args.action}: {out['name']} -> {out['version']}")
    return 0
