"""What machine and software a benchmark ran on, so that a result can be reproduced.

    describe()  # {"cpu_info": ..., "cpu_flags": [...], "cores": 2, "build_commit": ..., "versions": {...}}
"""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

# the SIMD features that decide which kernels run (x86 /proc/cpuinfo "flags", Arm "Features")
CPU_FLAGS = ("sse3", "ssse3", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vnni", "avx_vnni",
             "neon", "asimd", "asimddp", "sve", "i8mm")
PACKAGES = ("numpy", "numba", "gguf", "llama_cpp_python", "onnxruntime", "torch", "diffusers")
SOURCE_ROOT = Path(__file__).resolve().parents[2]      # the checkout, when edgegen runs from one
UNKNOWN = "unknown"


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError:
        return []                   # not Linux: platform's answers below


def cpu_model() -> str:
    for line in _cpuinfo():
        if line.startswith(("model name", "Model", "Hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or UNKNOWN


def cpu_flags() -> list[str]:
    """The CPU_FLAGS this CPU reports (Apple Silicon: neon, which every arm64 core has)."""
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return [f for f in CPU_FLAGS if f in have]
    return ["neon"] if platform.machine() in ("arm64", "aarch64") else []


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def source_commit(root: Path = SOURCE_ROOT) -> str:
    """The git commit of the checkout edgegen runs from ("+dirty" with uncommitted changes), else "unknown"."""
    if not (root / ".git").exists():
        return UNKNOWN
    try:
        run = lambda *args: subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,  # noqa: E731
                                           check=True, timeout=10).stdout.strip()
        head = run("rev-parse", "--short", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return head + ("+dirty" if dirty else "")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    import edgegen
    found = {"edgegen": edgegen.__version__}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def describe() -> dict:
    """The machine and software fields every result record carries."""
    return {"cpu_info": cpu_model(), "cpu_flags": cpu_flags(), "cores": cores(), "gpu_info": "",
            "python": platform.python_version(), "build_commit": source_commit(), "versions": versions()}


def describe_text(m: dict, bandwidth: dict[int, float] | None = None) -> str:
    """Two or three lines for the top of a markdown report."""
    flags = " ".join(m["cpu_flags"]) or "none found"
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [f"CPU: {m['cpu_info']}, {m['cores']} cores, flags: {flags}",
             f"edgegen commit {m['build_commit']}; Python {m['python']}; {vers}"]
    if bandwidth:
        lines.append("measured read bandwidth: " + ", ".join(f"{t} thread(s) {b:.1f} GB/s" for t, b in sorted(bandwidth.items())))
    return "\n".join(lines)
