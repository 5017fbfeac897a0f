"""`elm serve [DIR]`: a local web dashboard of the runs in DIR (or of the run DIR), live."""

from __future__ import annotations

import argparse
import sys


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve", help="a live web dashboard of running and finished runs",
        description="Serve a web dashboard of a run folder, or of every run in a folder of runs. "
                    "Pages update by themselves while runs write.")
    parser.add_argument("folder", nargs="?", default="runs", metavar="DIR",
                        help="a run folder, or a folder of run folders (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only)")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from elm.serve import Dashboard, is_local_host

    dashboard = Dashboard(args.folder, host=args.host, port=args.port)
    if not is_local_host(args.host):
        print(f"elm: warning: serving on {args.host}, reachable from other machines; "
              "the dashboard has no authentication", file=sys.stderr)
    print(f"elm serve: {dashboard.url} (Ctrl-C stops)", flush=True)
    dashboard.serve_forever()
    return 0
