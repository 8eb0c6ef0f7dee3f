"""What machine a result came from: CPU, cores, memory, GPU, OS, Python, library versions, git commit.

A latency number without its machine is not reproducible, so every results.json carries this.
Package versions come from installed metadata (importlib.metadata), so describing the machine never
imports torch or TensorRT; only ONNX Runtime is imported, to list its execution providers.
The load average before and after a run is recorded because this CPU may be shared.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

#: Distribution name -> label in the report. Missing ones are reported as None ("not installed").
PACKAGES = {
    "numpy": "numpy",
    "onnxruntime": "onnxruntime",
    "onnxruntime-gpu": "onnxruntime-gpu",
    "openvino": "openvino",
    "tensorrt": "tensorrt",
    "torch": "torch",
    "onnx": "onnx",
    "opencv-python-headless": "opencv",
    "pyserial": "pyserial",
    "pyzmq": "pyzmq",
    "matplotlib": "matplotlib",
}

#: Environment variables that change how many threads the math libraries use.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ORT_NUM_THREADS")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


#: CPU flags that decide which precisions run fast (AMX/AVX-512 BF16 for bf16, VNNI/AMX-INT8 for int8,
#: AVX512-FP16 for native fp16); listed in machine info when present.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
             "asimd", "asimdhp", "sve", "bf16", "i8mm")


def isa_extensions(cpuinfo_text: str | None = None) -> list[str]:
    """The ISA_FLAGS this CPU reports in /proc/cpuinfo ('flags' on x86, 'Features' on ARM)."""
    text = _read("/proc/cpuinfo") if cpuinfo_text is None else cpuinfo_text
    flags: set[str] = set()
    for line in (text or "").splitlines():
        key, _, rest = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(rest.split())
            break
    return [f for f in ISA_FLAGS if f in flags]


def cpu_info() -> dict:
    """CPU model, logical cores, cores this process may use, the frequency governor if exposed, and
    the ISA extensions that matter for reduced precision."""
    model = None
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
            model = line.split(":", 1)[1].strip()
            break
    if not model:
        model = platform.processor() or platform.machine()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "governor": governor.strip() if governor else None,
        "isa": isa_extensions(text),
    }


def memory_info() -> dict:
    """Total and available memory in GiB from /proc/meminfo (None where not Linux)."""
    out = {"total_gib": None, "available_gib": None}
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        gib = int(parts[0]) / (1024 * 1024)  # kB -> GiB
        if key == "MemTotal":
            out["total_gib"] = round(gib, 2)
        elif key == "MemAvailable":
            out["available_gib"] = round(gib, 2)
    return out


def gpu_info() -> dict:
    """NVIDIA GPUs via nvidia-smi, or a Jetson (Tegra) board; {'present': False, ...} otherwise."""
    tegra = _read("/etc/nv_tegra_release")
    model = _read("/proc/device-tree/model")
    if tegra or (model and "jetson" in model.lower()):
        return {"present": True, "kind": "jetson", "model": (model or "").strip("\x00\n "),
                "l4t": (tegra or "").splitlines()[0] if tegra else None}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            res = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"present": False, "reason": f"nvidia-smi failed: {exc}"}
        gpus = [line.strip() for line in res.stdout.splitlines() if line.strip()]
        if res.returncode == 0 and gpus:
            return {"present": True, "kind": "nvidia", "devices": gpus}
        return {"present": False, "reason": f"nvidia-smi found no GPU (exit {res.returncode})"}
    return {"present": False, "reason": "no nvidia-smi and no Jetson (Tegra) release file"}


def package_versions() -> dict:
    out = {}
    for dist, label in PACKAGES.items():
        try:
            out[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[label] = None
    return out


def onnxruntime_providers() -> list[str] | None:
    """Execution providers this ONNX Runtime build offers (None if ONNX Runtime is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    return list(ort.get_available_providers())


def git_commit(repo: Path) -> dict:
    """HEAD commit of `repo` and whether the work tree has uncommitted changes (None if not a repo)."""
    git = shutil.which("git")
    if not git:
        return {"commit": None, "dirty": None, "reason": "git not installed"}
    try:
        head = subprocess.run([git, "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
        if head.returncode != 0:
            return {"commit": None, "dirty": None, "reason": head.stderr.strip() or "not a git repo"}
        status = subprocess.run([git, "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"commit": None, "dirty": None, "reason": str(exc)}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(repo: Path | None = None) -> dict:
    """Everything above in one JSON-ready dict."""
    return {
        "hostname": platform.node(),
        "cpu": cpu_info(),
        "memory": memory_info(),
        "gpu": gpu_info(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "packages": package_versions(),
        "onnxruntime_providers": onnxruntime_providers(),
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "git": git_commit(repo) if repo else None,
        "load_average": load_average(),
    }


def describe(machine: dict) -> str:
    """One line for report headers: 'Intel Xeon ..., 2 cores, 23.0 GiB, no GPU, Linux, Python 3.11'."""
    cpu, mem, gpu = machine.get("cpu", {}), machine.get("memory", {}), machine.get("gpu", {})
    if gpu.get("present"):
        gpu_text = gpu.get("model") or ", ".join(gpu.get("devices", [])) or gpu.get("kind", "GPU")
    else:
        gpu_text = "no GPU"
    isa = [f for f in cpu.get("isa") or [] if f.startswith(("avx512", "amx", "avx2"))]
    return (
        f"{cpu.get('model')}, {cpu.get('usable_cores')} usable cores"
        f"{' (' + ' '.join(isa) + ')' if isa else ''}, "
        f"{mem.get('total_gib')} GiB RAM, {gpu_text}, "
        f"{machine.get('os', {}).get('system')} {machine.get('os', {}).get('release')}, "
        f"Python {machine.get('python', {}).get('version')}"
    )
