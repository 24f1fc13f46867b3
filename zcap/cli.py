"""The `zcap` command.  For now: `zcap demo`, the self-contained live demo."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zcap", description="zero-copy packet capture")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="capture generated traffic on a private veth pair")
    demo.add_argument("-c", "--count", type=int, default=20000, help="frames to send (default 20000)")
    demo.add_argument("--show", type=int, default=10, help="packets to print (default 10)")
    demo.add_argument("--mode", choices=("ring", "copy", "immediate"), default="ring")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from zcap.demo import run_demo
        return run_demo(count=args.count, show=args.show, mode=args.mode)
    return 2


if __name__ == "__main__":
    sys.exit(main())
