"""The child process that measures one backend, so that its peak RSS is that backend's own.

    python -m edgegen.bench.child '{"kind": "text", "backend": "native", "model": "m.gguf", ...}'

It streams one line per event on stdout, each ``PREFIX`` + JSON (stray prints from libraries are
ignored by the parent): ``{"progress": 1}`` after each timed repetition, ``{"result": {...}}``
after each test, and ``{"error": "one line"}`` when the backend cannot run (missing package, a
file it cannot read), after which it exits with status 1. Ctrl-C ends it quietly (status 130).
"""
from __future__ import annotations

import json
import sys

PREFIX = "@edgegen-bench "
ERROR_EXIT = 1
INTERRUPTED_EXIT = 130


def emit(event: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(event) + "\n")
    sys.stdout.flush()


def events(job: dict):
    if job["kind"] == "image":
        from edgegen.bench.image import measure_image
        return measure_image(job)
    from edgegen.bench.text import measure_backend
    return measure_backend(job)


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else 'no message'}"


def main(argv: list[str]) -> int:
    from edgegen.errors import EdgegenError
    job = json.loads(argv[0])
    try:
        for event in events(job):
            emit(event)
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT
    except EdgegenError as e:                    # edgegen's own messages are already one clear line
        emit({"error": str(e).splitlines()[0]})
        return ERROR_EXIT
    except (ImportError, OSError, ValueError, RuntimeError) as e:   # a library that cannot load or read the model
        emit({"error": one_line(e)})
        return ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
