"""Coverage census: rfcheck over torchvision's models and one model per timm architecture module.

    make census                       # runs in the optional environment .venv-zoo (make zoo-venv)
    .venv-zoo/bin/python benchmarks/census.py [--only torchvision|timm] [--limit N]
        [--filter SUBSTR] [--timeout 180] [--jobs 1] [--cache FILE] [--out docs/coverage.md]

For every model, in a subprocess of its own (so that a hang, a crash or a memory blow-up is
recorded rather than fatal):

1. ``rfarith.analyze`` of the model output(s);
2. ``crosscheck.hybrid`` when ``analyze`` failed (does it rescue the output field?);
3. ``rfnumeric.probe`` of every output tensor (structural weights, mode local);
4. the verdict: ``crosscheck.compare(model, shape, nodes=<output nodes>)`` where both sides ran.

Models: torchvision's classification, segmentation and video models and the backbones of its
detection models (``model.backbone``), built with ``weights=None`` (and ``weights_backbone=None``);
timm: the smallest model (by parameter count, ``test_*`` models only if nothing else) of each
architecture module, wrapped so that its forward is ``forward_features``. Weights are random;
models over ``--max-params`` (150M) parameters are left out. Torchvision models run at 224x224
(inception_v3 299; detection backbones at their detector's size; video 16x112x112, or 16x224x224
where the model needs it), timm models at their ``pretrained_cfg`` input size.

Results go to a JSON lines cache (``--cache``; one record per model, the first line the model list):
a rerun skips the models already there, so a long census can be stopped and resumed; delete the
file, or pass ``--fresh`` (which keeps the model list), to start afresh; ``--retry`` reruns only
the timeouts and crashes. ``--out`` writes the
Markdown report (counts, failure causes, per-model table) from every result in the cache, so
``--limit`` / ``--only`` / ``--filter`` choose what runs, not what is reported. Nothing here is a test, and nothing here
is part of ``make test``: torchvision and timm are optional dependencies.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / "out" / "census-cache.jsonl"
DEFAULT_OUT = ROOT / "docs" / "coverage.md"
STEPS = ("build", "analyze", "hybrid", "probe", "verdict")

# ---- the model list ----------------------------------------------------------------------------

TV_GROUPS = ("classification", "segmentation", "video", "detection")
# video models that only take 224x224 frames (the others run at 112x112)
TV_VIDEO_224 = ("mvit", "s3d", "swin3d")
TV_DETECTION_SIZES = {
    "ssd300_vgg16": 300,
    "ssdlite320_mobilenet_v3_large": 320,
    "fasterrcnn_mobilenet_v3_large_320_fpn": 320,
}


def _param_count(build) -> int:
    """Parameters of the model ``build()`` returns, built on the meta device (no memory, no init
    cost) where that works, else for real."""
    import torch

    try:
        with torch.device("meta"):
            model = build()
    except Exception:
        model = build()
    return sum(p.numel() for p in model.parameters())


def _tv_build_fn(group: str, name: str):
    import torchvision.models as tvm

    if group == "classification":
        return lambda: tvm.get_model(name, weights=None)
    if group in ("segmentation", "detection"):
        full = lambda: tvm.get_model(name, weights=None, weights_backbone=None)  # noqa: E731
        return full if group == "segmentation" else (lambda: full().backbone)
    return lambda: tvm.get_model(name, weights=None)


def _tv_shape(group: str, name: str) -> list[int]:
    if group == "video":
        side = 224 if name.startswith(TV_VIDEO_224) else 112
        return [1, 3, 16, side, side]
    if group == "detection":
        side = TV_DETECTION_SIZES.get(name, 224)
        return [1, 3, side, side]
    side = 299 if name.startswith("inception") else 224
    return [1, 3, side, side]


def torchvision_catalogue(max_params: int) -> list[dict]:
    import torchvision.models as tvm

    modules = {
        "classification": tvm,
        "segmentation": tvm.segmentation,
        "video": tvm.video,
        "detection": tvm.detection,
    }
    entries = []
    for group in TV_GROUPS:
        for name in sorted(tvm.list_models(module=modules[group])):
            entry = {
                "id": f"torchvision:{name}",
                "source": "torchvision",
                "group": group,
                "name": name,
                "shape": _tv_shape(group, name),
                "skip": None,
            }
            if group == "detection":
                entry["id"] += ".backbone"
            try:
                entry["params"] = _param_count(_tv_build_fn(group, name))
            except Exception as e:
                entry["params"] = None
                entry["skip"] = f"cannot be built: {type(e).__name__}: {_first_line(str(e))}"
            if entry["params"] is not None and entry["params"] > max_params:
                entry["skip"] = f"{entry['params'] / 1e6:.0f}M parameters > {max_params / 1e6:.0f}M"
            entries.append(entry)
    return entries


def timm_catalogue(max_params: int) -> list[dict]:
    import timm
    from timm.models import _registry

    by_module: dict[str, list[str]] = defaultdict(list)
    for name in timm.list_models():
        by_module[_registry._model_to_module.get(name, "?")].append(name)
    entries = []
    for module in sorted(by_module):
        names = by_module[module]
        real = [n for n in names if not n.startswith("test_")]
        sizes = {}
        for name in real or names:
            try:
                sizes[name] = _param_count(
                    lambda name=name: timm.create_model(name, pretrained=False)
                )
            except Exception:
                continue
        entry = {"source": "timm", "group": module, "skip": None, "candidates": len(names)}
        if not sizes:
            entry.update(
                id=f"timm:{module}",
                name=names[0],
                params=None,
                shape=None,
                skip="no model of this module can be built",
            )
            entries.append(entry)
            continue
        name = min(sizes, key=lambda n: (sizes[n], n))
        cfg = (
            _registry.get_pretrained_cfg(name) if hasattr(_registry, "get_pretrained_cfg") else None
        )
        size = list(getattr(cfg, "input_size", None) or (3, 224, 224))
        entry.update(id=f"timm:{name}", name=name, params=sizes[name], shape=[1, *size])
        if sizes[name] > max_params:
            entry["skip"] = (
                f"{sizes[name] / 1e6:.0f}M parameters > {max_params / 1e6:.0f}M, the smallest of its module"
            )
        entries.append(entry)
    return entries


# ---- one model, in a worker subprocess ---------------------------------------------------------


def _wrap_features(model):
    import torch.nn as nn

    class ForwardFeatures(nn.Module):
        """The timm model with ``forward = forward_features``; node names start with ``model.``."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.forward_features(x)

    return ForwardFeatures(model).eval()


def build_model(entry: dict):
    import torch

    torch.manual_seed(0)
    if entry["source"] == "torchvision":
        return _tv_build_fn(entry["group"], entry["name"])().eval()
    import timm

    return _wrap_features(timm.create_model(entry["name"], pretrained=False))


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def _error(e: BaseException) -> dict:
    record = {"ok": False, "error": type(e).__name__, "message": str(e)[:4000]}
    import rfarith

    if not isinstance(e, rfarith.RFError):  # an unexpected error: say where rfcheck raised it
        import traceback

        ours = [
            f
            for f in traceback.extract_tb(e.__traceback__)
            if any(
                f"{os.sep}{pkg}{os.sep}" in f.filename
                for pkg in ("rfarith", "rfnumeric", "crosscheck")
            )
        ]
        if ours:
            f = ours[-1]
            record["where"] = (
                f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno} in {f.name}"
            )
    for attr in ("kind", "op", "node", "module_type", "module_path"):
        value = getattr(e, attr, None)
        if isinstance(value, (str, int)):
            record[attr] = value
        elif value is not None:
            record[attr] = getattr(value, "__name__", None) or repr(value)[:200]
    return record


def _fmt(value) -> str:
    return str(value) if not isinstance(value, tuple) else "x".join(str(v) for v in value)


def _field_summary(rf) -> dict:
    return {
        "r": _fmt(tuple(rf.r)),
        "j": _fmt(tuple(str(j) for j in rf.j)),
        "n": _fmt(tuple(rf.n)),
        "flags": rf.describe_flags()
        if hasattr(rf, "describe_flags")
        else " ".join(sorted(rf.flags)),
    }


def _output_keys(model, shape) -> list:
    """The probe's ``output=`` argument for every tensor the model returns (None: one tensor)."""
    import torch

    with torch.no_grad():
        out = model(torch.rand(shape))
    if isinstance(out, torch.Tensor):
        return [None]
    if isinstance(out, dict):
        return [k for k, v in out.items() if isinstance(v, torch.Tensor)]
    if isinstance(out, (tuple, list)):
        return [i for i, v in enumerate(out) if isinstance(v, torch.Tensor)]
    raise TypeError(
        f"the model returns a {type(out).__name__}, not a tensor, dict or tuple of tensors"
    )


def _analytic_outputs(rep) -> dict:
    outputs = {}
    for key, node in rep.output_names.items():
        outputs[str(key)] = {"node": node, **_field_summary(rep[node])}
    if not outputs:
        raise ValueError("the report has no output field (no output depends on the input)")
    return outputs


def _analytic_record(rep, t: float) -> dict:
    """What the analyze and hybrid steps record of a report: its output fields, the front end
    that traced it, the seconds since ``t``."""
    return {
        "ok": True,
        "outputs": _analytic_outputs(rep),
        "front_end": getattr(rep, "front_end", "symbolic"),
        "time": time.perf_counter() - t,
    }


def worker(entry: dict, steps_file: str, threads: int) -> None:
    """Run the steps on one model, appending one JSON line per finished step to ``steps_file``
    (so that the parent knows which step a timeout or crash interrupted)."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(threads)
    import crosscheck
    import rfarith
    import rfnumeric

    shape = tuple(entry["shape"])

    def emit(step: str, record: dict) -> None:
        with open(steps_file, "a") as f:
            f.write(json.dumps({"step": step, **record}) + "\n")

    def start(step: str) -> None:
        emit(step, {"started": True})

    start("build")
    t = time.perf_counter()
    try:
        model = build_model(entry)
    except Exception as e:
        emit("build", {**_error(e), "time": time.perf_counter() - t})
        return
    emit("build", {"ok": True, "time": time.perf_counter() - t})

    nodes = None
    start("analyze")
    t = time.perf_counter()
    try:
        record = _analytic_record(rfarith.analyze(model, shape), t)
        nodes = [o["node"] for o in record["outputs"].values()]
        emit("analyze", record)
    except Exception as e:
        emit("analyze", {**_error(e), "time": time.perf_counter() - t})
        start("hybrid")
        t = time.perf_counter()
        try:
            rep = crosscheck.hybrid(model, shape)
            record = _analytic_record(rep, t)
            nodes = [o["node"] for o in record["outputs"].values()]
            measured = 0
            if "source" in rep.table.columns:
                measured = int((rep.table["source"] == "probe").sum())
            emit(
                "hybrid",
                {
                    **record,
                    "traced": bool(getattr(rep, "traced", True)),
                    "measured_rows": measured,
                    "rows": len(rep.table),
                },
            )
        except Exception as e:
            emit("hybrid", {**_error(e), "time": time.perf_counter() - t})

    start("probe")
    t = time.perf_counter()
    try:
        results = {}
        for key in _output_keys(model, shape):
            p = rfnumeric.probe(model, shape, output=key)
            results[str(key) if key is not None else "output"] = {
                "r": _fmt(tuple(p.r)),
                "j": _fmt(tuple(str(j) for j in p.j)),
                "flags": p.describe_flags(),
                "input": _fmt(tuple(p.input_shape[2:])),
                "cut": bool(p.growth_refused),
            }
        cut = any(o["cut"] for o in results.values())
        emit("probe", {"ok": True, "outputs": results, "cut": cut, "time": time.perf_counter() - t})
        probe_ok = True
    except Exception as e:
        emit("probe", {**_error(e), "time": time.perf_counter() - t})
        probe_ok = False

    if nodes is None or not probe_ok:
        return
    start("verdict")
    t = time.perf_counter()
    try:
        df = crosscheck.compare(model, shape, nodes=nodes)
        statuses = list(df["status"])
        status = (
            "disagree"
            if "disagree" in statuses
            else "agree"
            if all(s == "agree" for s in statuses)
            else "not_compared"
        )
        reasons = sorted({str(getattr(r, "value", r)) for rs in df["reason"] for r in rs})
        texts = [t_ for s, t_ in zip(statuses, df["reason_text"]) if s != "agree"]
        emit(
            "verdict",
            {
                "ok": True,
                "status": status,
                "rows": len(df),
                "statuses": dict(Counter(statuses)),
                "reasons": reasons,
                "text": (texts[0] if texts else "")[:2000],
                "time": time.perf_counter() - t,
            },
        )
    except Exception as e:
        emit("verdict", {**_error(e), "time": time.perf_counter() - t})


# ---- the parent: subprocesses, timeouts, memory watch, cache -------------------------------------


def _rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (Linux; 0 where unknown)."""
    total = 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    except OSError:
        pass
    return total + sum(_rss_bytes(int(c)) for c in children)


def run_one(entry: dict, args) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as tmp:
        steps_file = tmp.name
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        json.dumps(entry),
        "--steps-file",
        steps_file,
        "--threads",
        str(args.threads),
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, cwd=ROOT
    )
    killed = None
    peak = 0
    try:
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            peak = max(peak, _rss_bytes(proc.pid))
            if time.perf_counter() - t0 > args.timeout:
                killed = "timeout"
            elif peak > args.max_mem_gb * 2**30:
                killed = "memory"
            if killed:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        stderr = proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - t0
    steps: dict[str, dict] = {}
    try:
        for line in Path(steps_file).read_text().splitlines():
            rec = json.loads(line)
            steps[rec.pop("step")] = rec
    finally:
        Path(steps_file).unlink(missing_ok=True)
    interrupted = next((s for s in STEPS if steps.get(s, {}).get("started")), None)
    if interrupted is not None:
        if killed == "timeout":
            steps[interrupted] = {
                "ok": False,
                "error": "Timeout",
                "message": f"killed after {args.timeout:.0f} s (whole model) during {interrupted}",
            }
        elif killed == "memory":
            steps[interrupted] = {
                "ok": False,
                "error": "MemoryLimit",
                "message": f"killed at {peak / 2**30:.1f} GB resident (limit {args.max_mem_gb} GB) during {interrupted}",
            }
        else:
            tail = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
            steps[interrupted] = {
                "ok": False,
                "error": "Crash",
                "message": f"worker exited with status {proc.returncode} during {interrupted}: {' | '.join(tail)}"[
                    :2000
                ],
            }
    elif proc.returncode not in (0, None) and not steps:
        steps["build"] = {
            "ok": False,
            "error": "Crash",
            "message": f"worker exited with status {proc.returncode}: {stderr[-1000:]}",
        }
    return {
        "id": entry["id"],
        "entry": entry,
        "steps": steps,
        "wall": wall,
        "peak_rss_gb": round(peak / 2**30, 2),
        "killed": killed,
        "settings": {"timeout": args.timeout, "threads": args.threads, "jobs": args.jobs},
        "rfcheck": args.commit,
        "date": datetime.date.today().isoformat(),
    }


def load_cache(path: Path) -> tuple[dict | None, dict[str, dict]]:
    header, results = None, {}
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if "catalogue" in rec:
                header = rec
            else:
                results[rec["id"]] = rec
    return header, results


def versions() -> dict:
    import timm
    import torch
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def get_catalogue(path: Path, max_params: int) -> tuple[dict, dict[str, dict]]:
    header, results = load_cache(path)
    now = versions()
    if header is None or header.get("versions") != now or header.get("max_params") != max_params:
        print(
            "listing the models (parameter counts on the meta device; a few minutes) ...",
            flush=True,
        )
        t = time.perf_counter()
        entries = torchvision_catalogue(max_params) + timm_catalogue(max_params)
        header = {
            "catalogue": entries,
            "versions": now,
            "max_params": max_params,
            "listed_in_s": round(time.perf_counter() - t, 1),
        }
        if results:
            print(f"versions changed: the {len(results)} cached results are dropped", flush=True)
        results = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(header) + "\n")
    return header, results


# ---- causes --------------------------------------------------------------------------------------

PROBE_KINDS = {
    "too_wide": "field wider than max_size",
    "size_dependent": "field grows with the input",
    "layout": "token layout (units not located)",
    "forward": "model rejects the probe's input",
}
# phrases of rfarith's messages that say why an op has no rule, and their short form
RULE_DETAILS = (
    ("into blocks", "window partition / space-to-depth"),
    ("flattened into one", "slides along flattened h·w"),
    ("not a tensor of its input's rank", "black box changes rank"),
    ("black boxes of one input-dependent tensor", "black box with several inputs"),
    ("no periodic index map", "black box not periodic"),
    ("not periodic", "index map not periodic"),
    ("of a split axis", "mixes outer parts of a split axis"),
)
# phrases of other messages, and their short form
OTHER_DETAILS = (
    ("cannot copy the model", "probe cannot deepcopy the model"),
    ("immutable_list", "model mutates an fx argument list"),
    ("same dtype", "dtype mismatch, float64 probe"),
    ("do not broadcast", "shapes do not broadcast"),
)


def cause(step: dict) -> str:
    """A short category for a failed step, from its error class, attributes and message."""
    err, msg, kind = step.get("error", ""), step.get("message", ""), step.get("kind")
    low = msg.lower()
    if err == "Timeout":
        return "timeout"
    if err == "MemoryLimit":
        return "memory limit"
    if err == "Crash":
        return "worker crashed"
    if err == "UnsupportedOp":
        op = step.get("op") or "?"
        detail = next((short for phrase, short in RULE_DETAILS if phrase in msg), "")
        return f"no rule for {op}" + (f" ({detail})" if detail else "")
    if err == "TraceError":
        return f"fx cannot trace {step.get('module_type') or '?'}"
    detail = next((short for phrase, short in OTHER_DETAILS if phrase in msg), "")
    if err == "ShapeError":
        if kind == "forward":
            return "model rejects the grown input" + (f" ({detail})" if detail else "")
        return f"shape: {kind or 'other'}" + (f" ({detail})" if detail else "")
    if err == "ProbeError":
        if detail and kind in (None, "other"):
            return detail
        if kind in PROBE_KINDS:
            return PROBE_KINDS[kind] + (f" ({detail})" if detail else "")
        at = re.search(r"produces (Inf|NaN) first at '[^']*' \(([^)]*)\)", msg)
        if at:
            return f"probe overflow ({at.group(1)}) at {at.group(2)}"
        if "nan" in low or "overflow" in low or "inf" in low.split():
            return "probe overflow / NaN"
        if "underflow" in low:
            return "probe underflow"
        return "probe: " + _short(msg)
    if err == "NotComputed":
        return "output row not computed: " + _short(msg)
    if "out of memory" in low or err == "MemoryError":
        return "out of memory"
    if err == "KeyError":
        return "KeyError (a node name)"
    return f"{err}: {_short(msg, keep_quotes=True)}"


def coarse(c: str) -> str:
    """The kind of a cause: without the op's details or the module it happened in."""
    if c.startswith("fx cannot trace "):
        return "fx cannot trace a module"
    c = c.split(" (", 1)[0]
    return re.sub(r" at \S+$", "", c)


def _short(msg: str, words: int = 8, keep_quotes: bool = False) -> str:
    line = _first_line(msg)
    if not keep_quotes:
        line = re.sub(r"'[^']*'", "'…'", line)
    line = re.sub(r"\d+", "N", line)
    return " ".join(line.split()[:words])


# ---- summary and the Markdown report ---------------------------------------------------------------


def outcome(rec: dict) -> dict:
    s = rec["steps"]
    ok = lambda name: bool(s.get(name, {}).get("ok"))  # noqa: E731
    hybrid_traced = ok("hybrid") and s["hybrid"].get("traced", True)
    verdict = s.get("verdict", {})
    return {
        "built": ok("build"),
        "analyze": ok("analyze"),
        "hybrid": ok("analyze") or hybrid_traced,
        "hybrid_untraced": ok("hybrid") and not s["hybrid"].get("traced", True),
        "shape_traced": any(ok(n) and s[n].get("front_end") == "shapes" for n in ("analyze", "hybrid")),
        "probe": ok("probe"),
        "probe_cut": ok("probe") and bool(s["probe"].get("cut")),
        "both": (ok("analyze") or ok("hybrid")) and ok("probe"),
        "verdict": verdict.get("status") if verdict.get("ok") else ("error" if verdict else None),
    }


def fully_covered(rec: dict) -> bool:
    """Both sides gave the output field and agree on it."""
    o = outcome(rec)
    return o["built"] and o["hybrid"] and o["probe"] and o["verdict"] == "agree"


def failures(rec: dict) -> list[tuple[str, str]]:
    """(step, cause) for every step of the model that did not end well."""
    s, out = rec["steps"], []
    for name in ("build", "analyze", "hybrid", "probe"):
        step = s.get(name)
        if step is not None and not step.get("ok") and not step.get("started"):
            label = (
                name
                if not (name == "analyze" and s.get("hybrid", {}).get("ok"))
                else "analyze (hybrid rescues)"
            )
            out.append((label, cause(step)))
    v = s.get("verdict")
    if v is not None:
        if not v.get("ok"):
            out.append(("verdict", cause(v)))
        elif v["status"] != "agree":
            reasons = [
                r
                for r in v.get("reasons", [])
                if r not in ("global", "measured_op", "no_fit", "user_input_only")
            ]
            out.append(("verdict", f"{v['status']}: {', '.join(reasons) or '?'}"))
    return out


def _cell(step: dict | None, what: str = "") -> str:
    if step is None:
        return "–"
    if step.get("ok"):
        shapes = " (shapes)" if step.get("front_end") == "shapes" else ""  # traced with concrete sizes
        cut = " (cut)" if step.get("cut") else ""  # the probe's field cut by the border
        return "ok" + shapes + cut + (f" {what}" if what else "")
    return step.get("error", "?")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _seen(done: list[dict], key: str, default) -> str:
    """The values of a run setting over the cached records (older records: ``default``)."""
    values = Counter(str(r.get(key, r.get("settings", {}).get(key, default))) for r in done)
    values = Counter({k.removesuffix(".0"): n for k, n in values.items()})
    if len(values) <= 1:
        return next(iter(values), str(default))
    return " / ".join(f"{k} ({n} models)" for k, n in values.most_common())


def _commit() -> str:
    """The project's commit (with ``+changes`` when the working tree differs from it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "rfarith", "rfnumeric", "crosscheck"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def write_report(path: Path, header: dict, results: dict[str, dict], args) -> None:
    entries = header["catalogue"]
    done = [results[e["id"]] for e in entries if e["id"] in results]
    cols = ("torchvision", "timm")
    listed = {c: [e for e in entries if e["source"] == c] for c in cols}
    skipped = {c: [e for e in listed[c] if e["skip"]] for c in cols}
    ran = {c: [r for r in done if r["entry"]["source"] == c] for c in cols}
    outs = {c: [outcome(r) for r in ran[c]] for c in cols}

    def count(c, key, value=True):
        return sum(1 for o in outs[c] if o[key] == value)

    def pct(n, d):
        return f"{n} / {d} ({100 * n / d:.0f} %)" if d else "–"

    lines = []
    v = header["versions"]
    lines += [
        "# Coverage census",
        "",
        "How much of torchvision's and timm's model zoos rfcheck covers: for each model, does",
        "`rfarith.analyze` give the field of the model output, does `crosscheck.hybrid` rescue it when",
        "analyze fails, does `rfnumeric.probe` measure the output, and where both sides ran, does",
        "`crosscheck.compare` (the verdict on the output nodes) find that they agree.",
        "",
        f"Run of {_seen(done, 'date', datetime.date.today().isoformat())}, rfcheck at commit "
        f"{_seen(done, 'rfcheck', '?')}: torch {v['torch']}, torchvision {v['torchvision']}, "
        f"timm {v['timm']}, Python {v['python']}; CPU, {_seen(done, 'threads', args.threads)} torch "
        f"thread(s) per model, {_seen(done, 'jobs', args.jobs)} model(s) at a time, timeout "
        f"{_seen(done, 'timeout', args.timeout)} s per model.",
        "",
        "Models: torchvision's classification, segmentation and video models and the backbones of its",
        "detection models (`model.backbone`); timm: one model per architecture module (the smallest by",
        "parameter count), with forward = `forward_features`. Weights are random (`weights=None`);",
        f"models over {header['max_params'] / 1e6:.0f}M parameters are left out. Inputs: 224×224 for",
        "torchvision (inception_v3 299, detection backbones their detector's size, video 16×112×112 or",
        "16×224×224), timm's `pretrained_cfg` input size. The probe is structural, mode local.",
        "",
        "Rerun (needs the optional environment, `make zoo-venv`):",
        "",
        "```",
        "make census                           # resumes from its cache, out/census-cache.jsonl",
        'make census CENSUS_ARGS="--fresh"     # runs every model again (keeps the listed models)',
        'make census CENSUS_ARGS="--retry"     # reruns the cached timeouts and crashes',
        'make census CENSUS_ARGS="--failing"   # reruns every model not fully covered',
        'make census CENSUS_ARGS="--filter swin,coat --again"   # reruns the models whose id contains one of these',
        ".venv-zoo/bin/python benchmarks/census.py --only timm --filter vit --cache out/vit.jsonl --out out/vit.md",
        "```",
        "",
    ]
    lines += [
        f"Time: {sum(r['wall'] for r in done) / 60:.0f} min in all for the {len(done)} models (sum of the "
        "per-model subprocesses' wall times, imports and model builds included).",
        "",
    ]
    missing = sum(1 for e in entries if not e["skip"] and e["id"] not in results)
    if missing:
        lines += [
            f"**Partial census**: {missing} models not run yet (resume with `make census`).",
            "",
        ]

    lines += ["## Counts", "", "| | torchvision | timm families |", "| --- | --- | --- |"]
    lines.append("| listed | " + " | ".join(str(len(listed[c])) for c in cols) + " |")
    lines.append(
        "| left out (over the size limit / not buildable) | "
        + " | ".join(str(len(skipped[c])) for c in cols)
        + " |"
    )
    lines.append("| in the census (run) | " + " | ".join(str(len(ran[c])) for c in cols) + " |")
    lines.append("| built | " + " | ".join(str(count(c, "built")) for c in cols) + " |")
    rows = [
        ("`rfarith.analyze` gives the output field", "analyze"),
        ("or `crosscheck.hybrid` rescues it (analytic in all)", "hybrid"),
        ("`rfnumeric.probe` of the output works", "probe"),
    ]
    for label, key in rows:
        lines.append(
            f"| {label} | " + " | ".join(pct(count(c, key), len(ran[c])) for c in cols) + " |"
        )
    lines.append(
        "| ... of which read cut by the border (the model accepts no larger input: j, r, start NaN) | "
        + " | ".join(str(count(c, "probe_cut")) for c in cols)
        + " |"
    )
    lines.append(
        "| hybrid only by measuring everything (fx cannot trace the forward) | "
        + " | ".join(str(count(c, "hybrid_untraced")) for c in cols)
        + " |"
    )
    lines.append(
        "| analytic through the shape-aware trace (torch.fx with concrete sizes) | "
        + " | ".join(str(count(c, "shape_traced")) for c in cols)
        + " |"
    )
    lines.append("| both sides ran | " + " | ".join(str(count(c, "both")) for c in cols) + " |")
    for status in ("agree", "disagree", "not_compared", "error"):
        label = {
            "agree": "both sides ran and agree",
            "disagree": "both ran and disagree",
            "not_compared": "both ran, verdict not compared",
            "error": "both ran, compare raised",
        }[status]
        lines.append(
            f"| {label} | "
            + " | ".join(pct(count(c, "verdict", status), count(c, "both")) for c in cols)
            + " |"
        )
    groups = Counter(r["entry"]["group"] for r in ran["torchvision"])
    if groups:
        lines += [
            "",
            "Torchvision models run, by kind: "
            + ", ".join(f"{groups[g]} {g}" for g in TV_GROUPS if groups[g])
            + " (every detection model's backbone, some of them alike: the Faster/Mask/Keypoint R-CNN "
            "ResNet-50 FPNs share one architecture). timm: one model per architecture module.",
        ]
    lines += [
        "",
        "Against the targets (analytic: analyze or hybrid ≥ 92 of 94 torchvision models, i.e. 98 %, and",
        "≥ 90 % of timm families; the probe ≥ 90 % of both; agreement on 100 % of the models where both",
        "sides ran):",
        "",
        "| target | torchvision | timm families |",
        "| --- | --- | --- |",
    ]

    def met(n, d, goal):
        return (
            f"{'met' if d and n / d >= goal - 1e-9 else 'not met'} ({100 * n / d:.0f} %)"
            if d
            else "–"
        )

    lines.append(
        "| analytic ≥ 98 % / ≥ 90 % | "
        + " | ".join(
            met(count(c, "hybrid"), len(ran[c]), 92 / 94 if c == "torchvision" else 0.9)
            for c in cols
        )
        + " |"
    )
    lines.append(
        "| probe ≥ 90 % | "
        + " | ".join(met(count(c, "probe"), len(ran[c]), 0.9) for c in cols)
        + " |"
    )
    lines.append(
        "| agree = 100 % of both-ran | "
        + " | ".join(met(count(c, "verdict", "agree"), count(c, "both"), 1.0) for c in cols)
        + " |"
    )
    lines.append("")

    order = {
        "build": 0,
        "analyze": 1,
        "analyze (hybrid rescues)": 2,
        "hybrid": 3,
        "probe": 4,
        "verdict": 5,
    }
    by_cause: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in done:
        for step, c in failures(r):
            by_cause[(step, c)].append(r["entry"]["name"])
    families: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"torchvision": 0, "timm": 0}
    )
    for r in done:
        for step, c in set(failures(r)):
            families[(step, coarse(c))][r["entry"]["source"]] += 1
    lines += [
        "## Failure causes",
        "",
        "A model can appear under several steps. `analyze (hybrid rescues)`: analyze failed but hybrid",
        "gave the output field (so it is not an analytic failure). In short, by kind of cause:",
        "",
        "| step | cause | torchvision | timm |",
        "| --- | --- | --- | --- |",
    ]
    for (step, c), n in sorted(
        families.items(), key=lambda kv: (order.get(kv[0][0], 9), -sum(kv[1].values()), kv[0][1])
    ):
        lines.append(f"| {step} | {_md(c)} | {n['torchvision']} | {n['timm']} |")
    lines += [
        "",
        "In full, with the models and the first line of one message:",
        "",
        "| step | cause | models | examples | example message |",
        "| --- | --- | --- | --- | --- |",
    ]
    for (step, c), names in sorted(
        by_cause.items(), key=lambda kv: (order.get(kv[0][0], 9), -len(kv[1]), kv[0][1])
    ):
        example = next(r for r in done if r["entry"]["name"] == names[0])
        key = step.split(" ")[0]
        st = example["steps"].get(key, {})
        msg = st.get("message") or st.get("text") or ""
        lines.append(
            f"| {step} | {_md(c)} | {len(names)} | {', '.join(names[:3])}{', …' if len(names) > 3 else ''} "
            f"| {_md(_first_line(msg)[:240])}{' (at ' + st['where'] + ')' if st.get('where') else ''} |"
        )
    if not by_cause:
        lines.append("| – | none | 0 | | |")
    lines.append("")

    for c in cols:
        if skipped[c]:
            lines += [
                f"Left out ({c}): "
                + ", ".join(f"{e['name']} ({e['skip']})" for e in skipped[c])
                + ".",
                "",
            ]

    lines += [
        "## Per model",
        "",
        "Times in seconds (analyze / hybrid / probe / compare; wall: the whole subprocess, with the model",
        "build and imports). `r`: the analytic output field size (per axis; the first output when",
        "there are several). `–`: the step did not run.",
        "",
    ]
    for c in cols:
        lines += [
            f"### {c}",
            "",
            (
                "| model | group | params | input | analyze | hybrid | probe | verdict | r | times (a/h/p/c) | wall | cause |"
            ),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in ran[c]:
            e, s = r["entry"], r["steps"]
            an = s.get("analyze", {}).get("outputs") or s.get("hybrid", {}).get("outputs") or {}
            rr = next(iter(an.values()), {}).get("r", "") if an else ""
            hyb = s.get("hybrid")
            hcell = _cell(
                hyb, "(untraced)" if hyb and hyb.get("ok") and not hyb.get("traced", True) else ""
            )
            v_ = s.get("verdict")
            vcell = "–" if v_ is None else (v_["status"] if v_.get("ok") else v_.get("error", "?"))
            times = "/".join(
                f"{s[k]['time']:.1f}" if k in s and "time" in s[k] else "–"
                for k in ("analyze", "hybrid", "probe", "verdict")
            )
            causes = "; ".join(f"{st}: {cs}" for st, cs in failures(r))
            group = e["group"]
            lines.append(
                f"| {e['name']} | {group} | {e['params'] / 1e6:.1f}M | {'×'.join(map(str, e['shape'][1:]))} "
                f"| {_cell(s.get('analyze'))} | {hcell} | {_cell(s.get('probe'))} | {vcell} | {rr} "
                f"| {times} | {r['wall']:.0f} | {_md(causes)} |"
            )
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


# ---- main ------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("torchvision", "timm"))
    ap.add_argument("--limit", type=int, help="at most N models per source")
    ap.add_argument("--filter", help="only models whose id contains SUBSTR (several: comma-separated)")
    ap.add_argument("--again", action="store_true", help="rerun the models --filter picks, cached or not")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per model (default 180)")
    ap.add_argument("--jobs", type=int, default=1, help="models run at a time (default 1)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per model (default 1)")
    ap.add_argument(
        "--max-mem-gb", type=float, default=6.0, help="kill a model above this resident memory"
    )
    ap.add_argument("--max-params", type=float, default=150e6)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--retry", action="store_true", help="rerun cached timeouts and crashes")
    ap.add_argument(
        "--failing",
        action="store_true",
        help="rerun every cached model that did not end with both sides agreeing",
    )
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="drop the cached results (not the model list) and run everything again",
    )
    ap.add_argument(
        "--report-only", action="store_true", help="write --out from the cache, run nothing"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--steps-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    # this checkout's packages, not an installed copy (an editable install of another checkout
    # would otherwise be imported by the workers too)
    sys.path.insert(0, str(ROOT))
    if args.worker:
        worker(json.loads(args.worker), args.steps_file, args.threads)
        return 0

    args.commit = _commit()
    header, results = get_catalogue(args.cache, int(args.max_params))
    if args.fresh and not args.report_only:
        args.cache.write_text(json.dumps(header) + "\n")
        results = {}
    todo = []
    per_source: Counter = Counter()
    for e in header["catalogue"]:
        if (
            e["skip"]
            or (args.only and e["source"] != args.only)
            or (args.filter and not any(part in e["id"] for part in args.filter.split(",")))
        ):
            continue
        per_source[e["source"]] += 1
        if args.limit is not None and per_source[e["source"]] > args.limit:
            continue
        rec = results.get(e["id"])
        interrupted = rec is not None and (
            rec.get("killed") or any(st.get("error") == "Crash" for st in rec["steps"].values())
        )
        if rec is not None and not (args.retry and interrupted) and not (
            args.failing and not fully_covered(rec)
        ) and not (args.again and args.filter):
            continue
        todo.append(e)

    t0 = time.perf_counter()
    if not args.report_only and todo:
        print(f"{len(todo)} models to run ({len(results)} cached) -> {args.cache}", flush=True)
        lock = threading.Lock()

        def one(e):
            rec = run_one(e, args)
            with lock, open(args.cache, "a") as f:
                f.write(json.dumps(rec) + "\n")
            o = outcome(rec)
            fails = "; ".join(f"{s}: {c}" for s, c in failures(rec))
            print(
                f"{e['id']:<55} {rec['wall']:6.1f}s  analyze={'ok' if o['analyze'] else 'no'} "
                f"analytic={'ok' if o['hybrid'] else 'no'} probe={'ok' if o['probe'] else 'no'} "
                f"verdict={o['verdict']}  {fails}",
                flush=True,
            )
            return rec

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for rec in pool.map(one, todo):
                results[rec["id"]] = rec
    if todo and not args.report_only:
        print(f"ran {len(todo)} models in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    write_report(args.out, header, results, args)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
