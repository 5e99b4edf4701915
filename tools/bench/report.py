"""The outputs: ``benchmarks.json`` (every figure and raw sample) and ``benchmarks.md`` (the tables).

JSON layout: ``{"meta": {...}, "workloads": {name: {"meta": {...}, "tables": [table, ...]}}}``, a table as
built by ``common.table``. Running only some workloads (``--only``) replaces those workloads in an
existing JSON and keeps the others, each with the date and machine it was measured on; the Markdown is
always rendered from the whole JSON.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from tools.bench.common import CANDIDATES, NOT_INSTALLED, ROOT

NAMES = {
    "raw": "raw PyTorch",
    "fabric_core": "fabric_core",
    "lightning": "lightning.fabric",
    "accelerate": "accelerate",
}
TIMES, DASH, MU = "\u00d7", "\u2013", "\u00b5"
ORDER = ("step", "import", "first_fabric", "ddp", "deepspeed", "checkpoint", "gpu")
SKIP_PARAMS = {"statements", "cases", "raw_samples", "title", "plugins", "model"}


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def _read(path: str, key: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """Date, hardware, OS and the versions of everything compared."""
    memory_kb = _read("/proc/meminfo", "MemTotal")
    memory = f"{int(memory_kb.split()[0]) / 2**20:.1f} GiB RAM" if memory_kb else "RAM unknown"
    cpu = _read("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    from tools.bench.first_fabric import first_party_plugins

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu}, {os.cpu_count()} cores, {memory}",
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {dist: _version(dist) for _, dist in CANDIDATES.values()},
        "fabric_plugins": first_party_plugins(),
        "commit": commit or "unknown",
    }


def _number(value: float) -> str:
    magnitude = abs(value)
    return (
        f"{value:.0f}"
        if magnitude >= 100
        else f"{value:.1f}"
        if magnitude >= 10
        else f"{value:.2f}"
        if magnitude >= 1
        else f"{value:.3f}"
    )


def _target(text: str) -> str:
    """The ASCII target of the JSON (``<= 1.03x raw``) in typeset form."""
    return text.replace("<=", "\u2264").replace(">=", "\u2265").replace("x raw", f"{TIMES} raw")


def _value(value: float, unit: str) -> str:
    return f"{_number(value)} {unit.replace('us/', MU + 's/')}"


def _row(row: dict, unit: str, labels: dict[str, str]) -> str:
    name = labels.get(row["candidate"], NAMES[row["candidate"]])
    if row["status"] != "ok":
        status = "error (see below)" if row["status"] == "error" else row["status"]
        return f"| {name} | {status} | | | | | |"
    ratio = row.get("ratio")
    ratio_text = f"{ratio['median']:.3f}{TIMES} [{ratio['min']:.3f}{DASH}{ratio['max']:.3f}]" if ratio else DASH
    met = {True: "yes", False: "**no**", None: ""}[row.get("met")]
    cells = [
        _value(row["median"], unit),
        _value(row["min"], unit),
        _value(row["max"], unit),
        ratio_text,
        _target(row.get("target", "")),
        met,
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def _table(found: dict) -> list[str]:
    lines = [f"### {found['title']}", ""]
    if found.get("skipped"):
        lines += [f"**{found['skipped']}.**", ""]
    if not found["rows"]:
        return lines
    if found.get("about"):
        lines += [found["about"], ""]
    params = ", ".join(f"{k} {v}" for k, v in found["params"].items() if k not in SKIP_PARAMS)
    if params:
        lines += [f"<small>{params}</small>", ""]
    lines += [
        f"| candidate | median | min | max | ratio vs raw (median [min{DASH}max]) | target | met? |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    labels = found.get("labels", {})
    lines += [_row(row, found["unit"], labels) for row in found["rows"]]
    notes = [
        f"- {labels.get(row['candidate'], NAMES[row['candidate']])}: {row['note'].strip().splitlines()[-1]}"
        for row in found["rows"]
        if row.get("note") and row["status"] in ("ok", "error", "not applicable")
    ]
    lines += ["", *notes] if notes else []
    if found.get("profile"):
        lines += [
            "",
            f"Where fabric_core's time goes ({found['profile']['command']}):",
            "",
            "```text",
            found["profile"]["text"],
            "```",
        ]
    return [*lines, ""]


def _summary(workloads: dict) -> list[str]:
    lines = ["| workload | fabric_core | target | met? |", "|---|---:|---|---|"]
    for name in ORDER:
        for found in workloads.get(name, {}).get("tables", []):
            for row in found["rows"]:
                if row["candidate"] != "fabric_core" or "target" not in row:
                    continue
                figure = row.get("ratio") if found.get("ratio") else row
                if figure is None:  # no ratio without raw (e.g. --candidates fabric_core)
                    shown = DASH
                elif found.get("ratio"):
                    shown = f"{figure['median']:.3f}{TIMES}"
                else:
                    shown = _value(figure["median"], found["unit"])
                met = {True: "yes", False: "**no**", None: ""}[row.get("met")]
                lines.append(f"| {found['title']} | {shown} | {_target(row['target'])} | {met} |")
    return lines


def markdown(data: dict) -> str:
    meta = data["meta"]
    versions = meta["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `hatch run bench:run` (`python -m tools.bench`); do not edit by hand. How to read and "
        "re-run these numbers: [Reading and re-running the benchmarks](benchmarks-howto.md).",
        "",
        "| | |",
        "|---|---|",
        f"| date | {meta['date']} |",
        f"| run | {meta['mode']}, {meta['duration_s']:.0f} s, `{meta['command']}` |",
        f"| machine | {meta['machine']} |",
        f"| OS | {meta['os']} |",
        f"| Python | {meta['python']} |",
        *(f"| {dist} | {versions[dist]} |" for dist in versions),
        f"| first-party plugins | {', '.join(meta['fabric_plugins']) or 'none'} |",
        f"| threads | {meta['threads']} torch thread per worker process |",
        f"| commit | {meta['commit']} |",
        "",
        "## fabric_core against its targets",
        "",
        *_summary(data["workloads"]),
        "",
    ]
    for name in ORDER:
        if name not in data["workloads"]:
            continue
        workload = data["workloads"][name]
        lines += [f"## {workload['meta']['title']}", ""]
        if (workload["meta"]["date"], workload["meta"]["machine"]) != (meta["date"], meta["machine"]):
            lines += [f"_Measured {workload['meta']['date']} on {workload['meta']['machine']}._", ""]
        for found in workload["tables"]:
            lines += _table(found)
    lines += [
        "Re-run everything with `hatch run bench:run`; one workload with e.g. "
        "`hatch run bench:run --only step` (see [how to re-run](benchmarks-howto.md))."
    ]
    return "\n".join(lines) + "\n"


def write(out: Path, meta: dict, results: dict[str, dict], merge: bool) -> tuple[Path, Path]:
    """Write (or update, with ``merge``) ``benchmarks.json`` and ``benchmarks.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "benchmarks.json", out / "benchmarks.md"
    workloads: dict[str, dict] = {}
    if merge and json_path.exists():
        try:
            workloads = json.loads(json_path.read_text())["workloads"]
        except (ValueError, KeyError):
            workloads = {}
    workloads.update(results)
    data = {"meta": meta, "workloads": {name: workloads[name] for name in ORDER if name in workloads}}
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    md_path.write_text(markdown(data))
    return md_path, json_path
