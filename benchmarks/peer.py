"""The peer tool `fer`, run in its own virtualenv (.venv-fer: TensorFlow stays out of emotune's) through a worker
process that answers JSON commands, so the benchmarks can interleave its runs with emotune's."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "peer_fer_worker.py"


class FerWorker:
    """peer_fer_worker.py --serve in the fer venv: one JSON command per line in, one '@@ {json}' answer per line out."""

    def __init__(self, python: str, threads: int, log: Path, *extra: str):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)
        self.log = log
        self.proc = subprocess.Popen([python, str(WORKER), *extra, "--threads", str(threads), "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env, cwd=str(ROOT))
        self.info = self._answer()

    def _answer(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        lines = [ln for ln in self.log.read_text().splitlines() if ln.strip()] if self.log.is_file() else []
        raise RuntimeError(f"fer worker exited (rc {self.proc.wait()}): {lines[-1].strip() if lines else 'no output'} (log: {self.log})")

    def call(self, op: str, **kw) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        ans = self._answer()
        if not ans.get("ok"):
            raise RuntimeError(f"fer worker: {op} failed: {ans.get('error')}")
        return ans["result"]

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
