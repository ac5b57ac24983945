"""``edgegen bench``: hardware benchmarks of edgegen's backends, in llama-bench's vocabulary.

    edgegen bench model.gguf -p 512 -n 128 -r 5 -t 1,2 --backends native,llama.cpp -o md
    edgegen bench sd-folder --steps 20 --size 512x512

Modules: ``sysinfo`` (CPU, flags, versions, commit), ``bandwidth`` (the read-bandwidth probe and
its per-machine cache), ``traffic`` (bytes one decode step reads), ``runners`` (one eval seam per
backend), ``text`` / ``image`` (the timed loops, run inside a child process: ``child``),
``spawn`` (the parent: one child per backend, results streamed back), ``output`` (md, csv,
json, jsonl) and ``plot`` (matplotlib, optional). The CLI glue is ``cli``.
"""
