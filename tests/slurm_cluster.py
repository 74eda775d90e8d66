"""A single-node Slurm for the tests: Debian's `slurm-wlm` and `munge`, started as root on 127.0.0.1 with a config
of its own in a temporary folder (its own munge socket, ports, state and spool), stopped with every process it
started. Nothing of the machine's own Slurm or munge (if any) is used or touched.

Settings the Debian 12 package (Slurm 22.05) needs here: `ProctrackType=proctrack/linuxproc` and
`TaskPlugin=task/none` (no cgroup plugins in a container), `SelectType=select/cons_tres` with `CR_CPU`,
`MpiDefault=none`, no accounting, `SlurmdParameters=config_overrides` (the node says 2 CPUs whatever the machine
has), an empty plugin stack, and `AuthInfo=socket=...` pointing at the private munged.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def why_not() -> str | None:
    """Why a Slurm cannot be started here, or None."""
    if os.geteuid() != 0:
        return "the single-node Slurm test starts munged, slurmctld and slurmd as root; this is not root"
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install -y slurm-wlm munge)"
    return None


@dataclasses.dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    node: str

    def run(self, *command: str, timeout: float = 60) -> str:
        done = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"
        return done.stdout

    def wait(self, jobs: list[str], timeout: float = 300) -> None:
        """Until none of `jobs` (job ids) is pending or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-j", ",".join(jobs), "-o", "%i").strip():
                return
            time.sleep(0.5)
        raise AssertionError(f"Slurm jobs {jobs} still queued after {timeout} s:\n"
                             f"{self.run('squeue')}\n{self.log_tail()}")

    def states(self, job: str) -> list[tuple[str, str]]:
        """(JobState, ExitCode) of the job, of each task for an array (from slurmctld's memory: no accounting)."""
        text = self.run("scontrol", "-o", "show", "job", job)
        found = []
        for line in text.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            found.append((fields.get("JobState", "?"), fields.get("ExitCode", "?")))
        return found

    def log_tail(self) -> str:
        return "\n".join(f"--- {path.name}\n" + path.read_text(errors="replace")[-2000:]
                         for path in sorted(self.root.glob("*.log")))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _config(root: Path, node: str, cpus: int) -> str:
    return "\n".join([
        "ClusterName=vitsteps", f"SlurmctldHost={node}(127.0.0.1)", f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}", "AuthType=auth/munge", "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge.sock", "SlurmUser=root", "SlurmdUser=root",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU", "MpiDefault=none", "ReturnToService=2", "SchedulerType=sched/backfill",
        "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none", "SwitchType=switch/none", f"PlugStackConfig={root}/plugstack.conf",
        "SlurmdParameters=config_overrides", "MinJobAge=600", "KillWait=5",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP", ""])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@contextlib.contextmanager
def single_node_slurm(root: Path, cpus: int = 2) -> Iterator[Cluster]:
    """munged, slurmctld and slurmd in the foreground as children of this process; all stopped on the way out
    (and any job step left on the node cancelled first)."""
    root = Path(root)
    for folder in ("state", "spool"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    (root / "plugstack.conf").write_text("")
    (root / "slurm.conf").write_text(_config(root, node, cpus))
    (root / "tmp").mkdir(exist_ok=True)
    # the jobs' temporary folders stay out of the machine's /tmp, where the grading tests look for leftovers
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"), "TMPDIR": str(root / "tmp")}
    for name in [n for n in env if n.startswith(("SLURM_", "SBATCH_", "SQUEUE_"))]:
        if name != "SLURM_CONF":
            del env[name]  # a test run inside a Slurm job must not hand its job's settings on
    processes: list[subprocess.Popen] = []
    cluster = Cluster(root, env, node)
    steps_before = _pids_named("slurmstepd")
    try:
        processes.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--socket={root}/munge.sock", f"--pid-file={root}/munged.pid",
             f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            if (root / "munge.sock").exists():
                break
            time.sleep(0.05)
        processes.append(subprocess.Popen(["slurmctld", "-D", "-c", "-f", str(root / "slurm.conf")], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        processes.append(subprocess.Popen(["slurmd", "-D", "-f", str(root / "slurm.conf"), "-N", node], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while True:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env).stdout
            if state.strip() in ("idle", "mixed", "allocated"):
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"the single-node Slurm did not come up (node state {state.strip()!r}):\n"
                                   f"{cluster.log_tail()}")
            time.sleep(0.3)
        yield cluster
    finally:
        if len(processes) == 3 and processes[1].poll() is None:  # this private cluster's jobs only (SLURM_CONF)
            subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and subprocess.run(
                    ["squeue", "-h"], capture_output=True, text=True, env=env).stdout.strip():
                time.sleep(0.3)
        for process in reversed(processes):  # slurmd, slurmctld, then munged
            _stop(process)
        deadline = time.monotonic() + 10
        while (left := _pids_named("slurmstepd") - steps_before) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:  # a job step of this cluster that outlived its slurmd
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _pids_named(name: str) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.add(int(entry.name))
    return found
