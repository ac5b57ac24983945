"""Results as llama-bench shows them: a markdown table, CSV, a JSON array or JSON lines.

``enrich`` adds what the parent knows to each child's record: the ratio to the first backend,
achieved GB/s and its share of the measured bandwidth, the machine and software description.
"""
from __future__ import annotations

import csv
import io
import json

from edgegen.bench.sysinfo import describe_text

GB = 1e9
MIB = 2**20
FORMATS = ("md", "csv", "json", "jsonl")
# llama-bench's fields where they mean the same thing, then ours
TEXT_FIELDS = ("build_commit", "edgegen_version", "versions", "cpu_info", "cpu_flags", "cores", "gpu_info", "backends",
               "model_filename", "model_type", "model_size", "n_params", "model_n_params", "n_threads", "n_prompt",
               "n_gen", "n_depth", "test", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns",
               "samples_ts", "ratio", "ttft_ms", "peak_rss_mib", "gbps", "bw_share", "bandwidth_gbps",
               "decode_bytes_per_token", "weight_bytes_per_token", "tokens_repeatable", "excluded")
IMAGE_FIELDS = ("build_commit", "edgegen_version", "versions", "cpu_info", "cpu_flags", "cores", "gpu_info", "backends",
                "model_filename", "model_type", "model_size", "n_threads", "steps", "width", "height", "test",
                "test_time", "avg_step_s", "stddev_step_s", "samples_step_s", "avg_image_s", "stddev_image_s",
                "samples_image_s", "encode_s", "decode_s", "load_s", "ratio", "peak_rss_mib", "excluded")


def _key(r: dict) -> tuple:
    return (r["group"], r["test"], r["n_threads"])


def _speed(r: dict) -> float:
    return r["avg_ts"] if "avg_ts" in r else 1.0 / r["avg_step_s"]


def enrich(results: list[dict], backends: list[str], machine: dict, bandwidth: dict[int, float], excluded: str) -> list[dict]:
    """Records in --backends order within each model group, with ratio (speed / the first backend's
    speed on the same test), gbps and bw_share (decode tests only) and the machine fields."""
    order = {b: i for i, b in enumerate(backends)}
    rows = sorted(results, key=lambda r: (r["group"], order.get(r["backends"], len(order))))
    first: dict[tuple, dict] = {}
    for r in rows:
        first.setdefault(_key(r), r)
    out = []
    for r in rows:
        base = first[_key(r)]
        row = {**machine, "edgegen_version": machine["versions"]["edgegen"], **r, "excluded": excluded,
               "ratio": _speed(r) / _speed(base)}
        if "avg_ts" in r:
            decode = r["n_gen"] > 0 and r["n_prompt"] == 0
            bw = bandwidth.get(r["n_threads"])
            row["gbps"] = r["decode_bytes_per_token"] * r["avg_ts"] / GB if decode else None
            row["bandwidth_gbps"] = bw
            row["bw_share"] = row["gbps"] / bw if row["gbps"] is not None and bw else None
        out.append(row)
    return out


def _fields(rows: list[dict]) -> tuple[str, ...]:
    return TEXT_FIELDS if rows and "avg_ts" in rows[0] else IMAGE_FIELDS


def _cell(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v)


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_fields(rows), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(r.get(k)) for k in w.fieldnames})
    return buf.getvalue()


def to_json(rows: list[dict]) -> str:
    return json.dumps([{k: r.get(k) for k in _fields(rows)} for r in rows], indent=2) + "\n"


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps({k: r.get(k) for k in _fields(rows)}) + "\n" for r in rows)


def _opt(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / MIB:.2f} MiB"


def _text_table(rows: list[dict]) -> list[str]:
    lines = ["| model | size | params | backend | threads | test | t/s | ratio | ttft ms | GB/s | % of BW | peak RSS MiB |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        share = None if r["bw_share"] is None else 100 * r["bw_share"]
        lines.append(f"| {r['model_type']} | {_size(r['model_size'])} | {r['n_params'] / 1e6:.2f} M | {r['backends']} "
                     f"| {r['n_threads']} | {r['test']} | {r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} | {r['ratio']:.3f} "
                     f"| {r['ttft_ms']:.1f} | {_opt(r['gbps'], '.2f')} | {_opt(share, '.0f')} | {r['peak_rss_mib']:.0f} |")
    return lines


def _image_table(rows: list[dict]) -> list[str]:
    lines = ["| model | backend | threads | test | s/step | ratio | s/image | peak RSS MiB |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model_filename']} | {r['backends']} | {r['n_threads']} | {r['test']} "
                     f"| {r['avg_step_s']:.4f} ± {r['stddev_step_s']:.4f} | {r['ratio']:.3f} "
                     f"| {r['avg_image_s']:.3f} ± {r['stddev_image_s']:.3f} | {r['peak_rss_mib']:.0f} |")
    return lines


def to_md(rows: list[dict], machine: dict, bandwidth: dict[int, float], notes: str) -> str:
    table = _text_table(rows) if rows and "avg_ts" in rows[0] else _image_table(rows) if rows else ["(no results)"]
    return "\n".join([describe_text(machine, bandwidth), "", *table, "", notes]) + "\n"


def render(fmt: str, rows: list[dict], machine: dict, bandwidth: dict[int, float], notes: str) -> str:
    if fmt == "md":
        return to_md(rows, machine, bandwidth, notes)
    return {"csv": to_csv, "json": to_json, "jsonl": to_jsonl}[fmt](rows)
