"""The worker side of the peer-tool protocol (benchmarks/peer.py is the caller): one JSON command per line on stdin,
one '@@ {json}' answer per line on stdout. Standard library only: it runs inside each peer's own virtualenv."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def serve(ops: dict[str, Callable[..., Any]], info: dict[str, Any]) -> None:
    """Announce readiness with `info`, then answer commands until 'quit' or end of input; a failing command is
    reported and the worker keeps serving."""
    print("@@ " + json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            break
        try:
            ans = {"ok": True, "result": ops[op](**cmd)}
        except Exception as exc:  # report, keep serving
            ans = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print("@@ " + json.dumps(ans), flush=True)
