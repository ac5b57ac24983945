"""The parent side: one child process per (model, backend), results streamed back and collected.

    collected = collect(jobs)      # Ctrl-C stops early: collected.interrupted, with what was measured

A backend that cannot run (a missing package, a file it cannot read) is reported in one line on
stderr, naming the backend and why, and the run goes on with the rest.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Iterator

from edgegen.bench.child import ERROR_EXIT, PREFIX


@dataclass
class Collected:
    results: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)    # (backend, one-line reason)
    interrupted: bool = False


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def run_child(job: dict) -> Iterator[dict]:
    """The events of one child process measuring ``job``; the child is ended if the caller stops early."""
    with tempfile.TemporaryFile(mode="w+") as err:
        # cwd: a neutral folder, so `-m` imports the installed edgegen, never a source tree in the current folder
        proc = subprocess.Popen([sys.executable, "-m", "edgegen.bench.child", json.dumps(job)],
                                stdout=subprocess.PIPE, stderr=err, text=True, cwd=tempfile.gettempdir())
        try:
            errored = False
            for line in proc.stdout:
                if line.startswith(PREFIX):
                    event = json.loads(line[len(PREFIX):])
                    errored = errored or "error" in event
                    yield event
            proc.wait()
            if proc.returncode not in (0, ERROR_EXIT) or (proc.returncode and not errored):
                err.seek(0)
                yield {"error": f"the measuring process exited with status {proc.returncode}: {_last_line(err.read())}"}
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            proc.stdout.close()


def _progress_bar(total: int):
    from tqdm import tqdm
    return tqdm(total=total, unit="rep", file=sys.stderr, disable=None, leave=False, dynamic_ncols=True)


def collect(jobs: list[dict], run: Callable[[dict], Iterator[dict]] = run_child, total: int | None = None,
            log: Callable[[str], None] | None = None) -> Collected:
    """Run every job in turn; a result keeps its job's ``group``. Ctrl-C ends the run with what it has."""
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    out = Collected()
    bar = _progress_bar(total or 0)
    try:
        for job in jobs:
            bar.set_description(f"{job['backend']} {job['label']}")
            with contextlib.closing(run(job)) as events:
                for event in events:
                    if "progress" in event:
                        bar.update(event["progress"])
                    elif "result" in event:
                        out.results.append({**event["result"], "group": job["group"]})
                    elif "error" in event:
                        out.failures.append((job["backend"], event["error"]))
                        bar.clear()
                        log(f"edgegen bench: backend {job['backend']} skipped for {job['label']}: {event['error']}")
    except KeyboardInterrupt:
        out.interrupted = True
    finally:
        bar.close()
    return out
