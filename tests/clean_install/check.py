"""The clean-install checks: what a user gets from `pip install fabric-core ...` works, with nothing else.

usage: python tests/clean_install/check.py [--timeout SECONDS] [--keep]

Run in the `clean` hatch environment (`hatch run clean:check`), which holds the four packages (five in
the `deepspeed` variant) installed from packages/* as wheels, not editable, and only what they declare:
no pytest, no scikit-learn. This is
a plain script, not a pytest module, so that running the checks brings nothing into the environment.

Each check prints PASS or FAIL with its reason; the exit status is 1 when any fails. Every subprocess is
bounded by --timeout (default 120 s) and its whole process group is killed when it runs over.

The environment variable CLEAN_INSTALL_EXTRAS names the extras the environment was installed with
beyond the packages themselves (the `tensorboard` variant: "fabric-loggers[tensorboard]"): they count
as requested in the dependency closure, and the TensorBoard logger is then expected to write event files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: What the environment installs, as a user would name it (hatch.toml, [envs.clean] dependencies).
REQUESTED = ["fabric-core[cuda,fsdp,loggers]", "fabric-cuda", "fabric-fsdp", "fabric-loggers"]
#: Distribution name -> (folder under packages/, import package).
FABRIC = {
    "fabric-core": "fabric_core",
    "fabric-cuda": "fabric_cuda",
    "fabric-fsdp": "fabric_fsdp",
    "fabric-loggers": "fabric_loggers",
}
#: Installed only by the variant that asks for them (CLEAN_INSTALL_EXTRAS), then checked like the others.
OPTIONAL_FABRIC = {"fabric-deepspeed": "fabric_deepspeed"}
#: Put into every virtual environment by its creator, not by any package: allowed without a requirer.
SEEDED = {"pip", "setuptools", "wheel"}
#: The last line of a traceback, possibly behind torchrun's "[rankN]: " prefix.
ERROR_LINE = re.compile(r"^(\[rank\d+\]: )?[A-Za-z_][\w.]*(Error|Exception|Exit)\b")


class CheckFailed(Exception):
    """A check's failure, with the reason to print."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requested_extras() -> list[str]:
    return os.environ.get("CLEAN_INSTALL_EXTRAS", "").split()


def tensorboard_requested() -> bool:
    return any(canonical(r.split("[")[0]) == "fabric-loggers" and "tensorboard" in r for r in requested_extras())


def installed_fabric() -> dict[str, str]:
    """The first-party distributions of this environment: the four always there, plus those a variant added."""
    requested = {canonical(r.split("[")[0]) for r in requested_extras()}
    return {**FABRIC, **{name: package for name, package in OPTIONAL_FABRIC.items() if name in requested}}


# -- running the scripts --------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """This environment without launcher or scheduler variables, plugins strict (a failing plugin is an error)."""
    drop = ("FABRIC_", "MASTER_", "SLURM_", "LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["FABRIC_STRICT_PLUGINS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run ``command`` in its own process group; past ``timeout`` the whole group is killed and the check fails."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
        raise CheckFailed(f"{' '.join(command)} did not finish within {timeout:.0f} s:\n{tail(output)}") from None
    return subprocess.CompletedProcess(command, process.returncode, output, None)


def tail(text: str, lines: int = 25) -> str:
    """The exception lines of every rank's traceback (the first cause is often not last), then the last lines."""
    all_lines = (text or "").rstrip().splitlines()
    errors = [line for line in all_lines if ERROR_LINE.match(line)]
    shown = [f"    ! {line}" for line in errors[:10]] + [f"    | {line}" for line in all_lines[-lines:]]
    return "\n".join(shown)


def expect(result: subprocess.CompletedProcess, *lines: str) -> None:
    """The command exited 0 and printed every one of ``lines``."""
    missing = [line for line in lines if line not in result.stdout]
    if result.returncode != 0 or missing:
        reason = f"exit {result.returncode}" + (f", missing {missing}" if missing else "")
        raise CheckFailed(f"{' '.join(map(str, result.args))}: {reason}\n{tail(result.stdout)}")


def script(name: str, *args: object) -> list[str]:
    """The command running ``tests/clean_install/<name>`` with this environment's python."""
    return [sys.executable, str(HERE / name), *map(str, args)]


def fabric_cli() -> str:
    beside = Path(sys.executable).parent / "fabric"
    found = str(beside) if beside.exists() else shutil.which("fabric")
    if found is None:
        raise CheckFailed("the `fabric` command is not installed (fabric-core's [project.scripts])")
    return found


# -- the checks -----------------------------------------------------------------------------------


def check_closure(work: Path, timeout: float) -> str:
    """Every installed distribution is required, transitively, by what was requested, and all of it is there."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    installed = {canonical(d.metadata["Name"]): d for d in metadata.distributions()}
    required_by: dict[str, str] = {}
    problems = []
    pending = [(Requirement(r), "requested") for r in [*REQUESTED, *requested_extras()]]
    while pending:
        requirement, parent = pending.pop(0)  # breadth first: the nearest requirer is named
        name = canonical(requirement.name)
        if name not in installed:
            problems.append(f"{requirement} (required by {parent}) is not installed")
            continue
        version = installed[name].version
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{name} {version} does not satisfy {requirement} (required by {parent})")
        extras = sorted(requirement.extras)
        key = name + (f"[{','.join(extras)}]" if extras else "")
        if key in required_by:
            continue
        required_by.setdefault(name, parent)
        required_by[key] = parent
        for text in installed[name].requires or []:
            child = Requirement(text)
            environments = [{**default_environment(), "extra": extra} for extra in extras or [""]]
            if child.marker is None or any(child.marker.evaluate(environment) for environment in environments):
                pending.append((child, key))
    unrequired = sorted(set(installed) - set(required_by) - SEEDED)
    if unrequired:
        problems.append(f"installed but required by nothing requested: {', '.join(unrequired)}")
    print("  installed distributions (name, version, required by):")
    for name in sorted(installed):
        reason = required_by.get(name, "the virtual environment's seed" if name in SEEDED else "NOTHING")
        print(f"    {name:<26} {installed[name].version:<14} {reason}")
    if problems:
        raise CheckFailed("; ".join(problems))
    return f"{len(installed)} distributions, each one required (extras: {requested_extras() or 'none'})"


def check_installed_as_wheels(work: Path, timeout: float) -> str:
    """The packages are regular (non-editable) installs, and their files are those of packages/*/src."""
    problems = []
    for name, package in installed_fabric().items():
        distribution = metadata.distribution(name)
        direct = json.loads(distribution.read_text("direct_url.json") or "{}")
        if direct.get("dir_info", {}).get("editable"):
            problems.append(f"{name} is an editable install")
        source = ROOT / "packages" / name / "src" / package
        installed = {
            Path(*f.parts[1:]).as_posix(): f
            for f in distribution.files or []
            if f.parts[0] == package and f.suffix == ".py"
        }
        expected = {p.relative_to(source).as_posix(): p for p in source.rglob("*.py") if "__pycache__" not in p.parts}
        differing = sorted(set(installed) ^ set(expected))
        differing += sorted(
            path
            for path in set(installed) & set(expected)
            if Path(installed[path].locate()).read_bytes() != expected[path].read_bytes()
        )
        if differing:
            problems.append(f"{name}'s installed files differ from packages/{name}/src in {', '.join(differing[:5])}")
    module = __import__("fabric_core")
    if str(ROOT / "packages") in str(module.__file__):
        problems.append(f"fabric_core is imported from the source tree ({module.__file__})")
    if problems:
        raise CheckFailed(
            "; ".join(problems) + ". The environment holds copies made when it was built: after changing "
            "packages/*, rebuild it with `hatch env remove clean` (then `hatch run clean:check`)."
        )
    return f"non-editable, identical to packages/*/src, imported from {Path(module.__file__).parents[1]}"


def check_broadcast(work: Path, timeout: float) -> str:
    """fabric.broadcast of a Python object and of a tensor, on 2 gloo processes started by `fabric run`."""
    command = [fabric_cli(), "run", "--accelerator", "cpu", "--devices", "2", str(HERE / "broadcast.py")]
    expect(run(command, work, timeout), "rank 0 broadcast ok", "rank 1 broadcast ok")
    return "an object and a tensor reach both ranks (fabric run --accelerator cpu --devices 2)"


def check_sharded(work: Path, timeout: float) -> str:
    """A sharded checkpoint saved and loaded by fabric-fsdp's FSDPStrategy on 2 gloo processes, then consolidated."""
    out = work / "sharded"
    expect(run(script("sharded.py", out), work, timeout), "rank 0 sharded ok", "rank 1 sharded ok")
    consolidated = work / "consolidated.pt"
    expect(run([fabric_cli(), "consolidate", str(out / "checkpoint"), "--output", str(consolidated)], work, timeout))
    check = "import sys, torch; assert torch.load(sys.argv[1], weights_only=True)['step'] == 2; print('loaded ok')"
    expect(run([sys.executable, "-c", check, str(consolidated)], work, timeout), "loaded ok")
    return "FSDPStrategy(state_dict_type='sharded') round trip on 2 processes; `fabric consolidate` of it loads"


def check_single_file(work: Path, timeout: float) -> str:
    """A single-file checkpoint saved and loaded in one process."""
    expect(run(script("single_file.py", work / "single.ckpt"), work, timeout), "single file ok")
    return "fabric.save / fabric.load of model, optimizer and plain values, exact"


def check_loggers(work: Path, timeout: float) -> str:
    """Each logger of fabric-loggers writes its files (TensorBoard: only with the extra, else a clear error)."""
    mode = "tensorboard" if tensorboard_requested() else "plain"
    expect(run(script("loggers.py", work / "logs", mode), work, timeout), "csv ok", "tensorboard ok")
    if mode == "tensorboard":
        return "csv: metrics.csv and hparams.yaml; tensorboard (fabric-loggers[tensorboard]): event files read back"
    return "csv: metrics.csv and hparams.yaml; tensorboard without its extra: ModuleNotFoundError naming the extra"


def check_cli(work: Path, timeout: float) -> str:
    """`fabric --help` lists the commands; `fabric plugins --check` loads every plugin and imports every target."""
    fabric = fabric_cli()
    expect(run([fabric, "--help"], work, timeout), "run", "plugins", "consolidate")
    result = run([fabric, "plugins", "--check"], work, timeout)
    count = len(installed_fabric())
    expect(result, f"{count} plugins: {count} loaded, 0 failed", ", 0 failed")
    return "; ".join(line for line in result.stdout.splitlines() if line.startswith((f"{count} plugins", "check:")))


def check_deepspeed(work: Path, timeout: float) -> str:
    """fabric-deepspeed's ZeRO stage 3 on 2 gloo processes: train, save, load, `fabric consolidate` (its variant)."""
    if "fabric-deepspeed" not in installed_fabric():
        return "not part of this variant (the `deepspeed` variant installs fabric-core[deepspeed])"
    out = work / "deepspeed"
    expect(run(script("deepspeed_zero.py", out), work, timeout), "rank 0 deepspeed ok", "rank 1 deepspeed ok")
    consolidated = work / "deepspeed.pt"
    consolidate = [fabric_cli(), "consolidate", str(out), "--output", str(consolidated)]
    expect(run(consolidate, work, timeout), "format deepspeed")
    check = "import sys, torch; assert torch.load(sys.argv[1], weights_only=True)['step'] == 2; print('loaded ok')"
    expect(run([sys.executable, "-c", check, str(consolidated)], work, timeout), "loaded ok")
    return "DeepSpeedStrategy(stage=3) round trip on 2 processes; `fabric consolidate` of it loads"


CHECKS: list[tuple[str, Callable[[Path, float], str]]] = [
    ("dependency closure", check_closure),
    ("installed as wheels", check_installed_as_wheels),
    ("fabric.broadcast on 2 processes", check_broadcast),
    ("sharded checkpoint on 2 processes", check_sharded),
    ("single-file checkpoint", check_single_file),
    ("loggers write their files", check_loggers),
    ("fabric CLI", check_cli),
    ("DeepSpeed ZeRO-3 on 2 processes", check_deepspeed),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each subprocess may run (default 120)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory and print where it is")
    args = parser.parse_args()

    print(f"clean install: {sys.executable} (Python {sys.version.split()[0]}), extras: {requested_extras() or 'none'}")
    work = Path(tempfile.mkdtemp(prefix="fabric-clean-install-"))
    failed = []
    started = time.perf_counter()
    try:
        for title, check in CHECKS:
            print(f"--- {title}", flush=True)
            began = time.perf_counter()
            try:
                detail = check(work, args.timeout)
            except CheckFailed as err:
                failed.append(title)
                print(f"FAIL  {title}: {err}", flush=True)
            except Exception as err:  # a broken check is a failure with its reason, not a crash
                failed.append(title)
                print(f"FAIL  {title}: {type(err).__name__}: {err}", flush=True)
            else:
                print(f"PASS  {title}: {detail} ({time.perf_counter() - began:.1f} s)", flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    if failed:
        print(f"\nclean install: {len(failed)} of {len(CHECKS)} checks FAILED ({', '.join(failed)}) in {total:.1f} s")
        return 1
    print(f"\nclean install: all {len(CHECKS)} checks passed in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
