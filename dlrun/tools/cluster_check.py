"""``make test-cluster``: dlrun's SLURM path, end to end, on a real (if tiny) cluster.

When no SLURM answers (``sinfo``), :class:`ThrowawayCluster` starts one on this machine
from Debian's packages, installing them when missing (root only): ``munged``,
``mariadbd`` with ``slurmdbd`` (so that ``sacct`` answers as on a real cluster),
``slurmctld`` and ``slurmd``, one node with this machine's cores, one partition ``cpu``.
Its config, state, logs and database live in a temporary folder, the daemons listen on
free ports of 127.0.0.1, and every process it started is stopped at the end by its id.
Two settings differ from SLURM's defaults, both to keep the check short: a requeued job
may start again after 11 s (``cred_expire=10``; 121 s by default) and the backfill
scheduler looks every 5 s (``bf_interval``; 30 s).

Then :data:`CHECKS` run the installed ``dlrun`` against it and it prints
``N passed, N failed``:

- ``sweep``: a 4-job sweep under ``hydra/launcher=slurm_cpu`` with only the partition
  given ends ``ok``, each job's SLURM job id in its ``metrics.json`` and the leaderboard;
- ``cancel``: one job ``scancel``-ed while it runs is marked ``failed`` (cancelled), the
  other ends ``ok``, the sweep exits 1 within a minute of the cancel;
- ``requeue``: a job longer than its time limit (``hydra.launcher.timeout_min=1``; its epochs
  are sized to train 75 s on this machine now) is requeued, continues from its checkpoint and
  ends ``ok`` with the metrics of an uninterrupted run of the same seed;
- ``no_accounting`` (throwaway cluster only, last): ``cancel`` again with ``slurmdbd`` stopped,
  so that ``sacct`` fails as on a cluster without accounting: the sweep still ends within a
  minute, and submitit's polling warning is printed once.

It is not part of ``make test``: it needs root (or a cluster) and a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from dlrun.tools.bad_inputs import dlrun_command

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "slurmdbd", "munge", "mariadb-server")
DAEMONS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sacct", "sbatch")
PARTITION = "cpu"
# Every job: one TensorFlow thread, no progress bars (the machine may be shared).
QUIET = ("trainer.threads=1", "trainer.progress=none")
# Long enough that a job is still running when it is cancelled.
LONG_EPOCHS = 4000
# The requeued run trains this long uninterrupted (its epochs are measured first): past its
# 1-minute limit, with a margin for a machine whose load changes.
REQUEUE_SECONDS = 75


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(what: str, ready: Callable[[], bool], *, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.5)


def _answers(*command: str, env: dict[str, str] | None = None) -> bool:
    try:
        return subprocess.run(command, env=env, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def install_packages() -> None:
    """Install SLURM, munge and MariaDB from the distribution when a daemon is missing (root)."""
    if all(shutil.which(d) for d in DAEMONS):
        return
    if os.geteuid() != 0:
        raise SystemExit("no SLURM answers and its packages are missing: run as root (it installs "
                         f"{' '.join(PACKAGES)} with apt-get), or on a machine of a SLURM cluster")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    print(f"installing {' '.join(PACKAGES)} (apt-get)", flush=True)
    # The packages' services are not started: this check starts its own daemons.
    policy = Path("/usr/sbin/policy-rc.d")
    added = not policy.exists()
    if added:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], env=env,
                       check=True, stdout=subprocess.DEVNULL)
    finally:
        if added:
            policy.unlink()


class ThrowawayCluster:
    """A single-node SLURM with accounting, in ``root``; :meth:`start`, then :meth:`stop`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.daemons: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
        self.ports = {name: _free_port() for name in ("ctld", "slurmd", "dbd", "db")}

    def start(self) -> None:
        (self.root / "log").mkdir()
        self._munge()
        self._mariadb()
        self._slurmdbd()
        self._slurm()

    def stop(self) -> None:
        """Cancel what is left of the jobs, then stop every daemon started, last first, by id."""
        if shutil.which("scancel") and self.procs:
            subprocess.run(["scancel", "--full", "-u", str(os.getuid())], env=self.env, capture_output=True,
                           timeout=20, check=False)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()

    def stop_accounting(self) -> None:
        """Stop slurmdbd (by its process id): ``sacct`` then fails as where accounting is off."""
        proc = self.daemons["slurmdbd"]
        proc.terminate()
        proc.wait(timeout=30)

    def _spawn(self, name: str, *command: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115  closed with the process
        proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        self.daemons[name] = proc

    def _munge(self) -> None:
        d = self.root / "munge"
        d.mkdir(mode=0o700)
        key = d / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.socket = d / "munge.sock"
        self._spawn("munged", "munged", "--foreground", "--force", f"--key-file={key}", f"--socket={self.socket}",
                    f"--pid-file={d / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
                    f"--seed-file={d / 'munged.seed'}")
        _wait_for("munged", self.socket.exists)

    def _mariadb(self) -> None:
        data, sock = self.root / "db", self.root / "mysqld.sock"
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                        "--skip-test-db", "--auth-root-authentication-method=socket"],
                       check=True, capture_output=True, timeout=300)
        self._spawn("mariadbd", "mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                    f"--port={self.ports['db']}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                    "--user=root", f"--pid-file={self.root / 'mysqld.pid'}", "--innodb-buffer-pool-size=32M",
                    "--skip-log-bin", f"--log-error={self.root / 'log' / 'mariadbd.log'}")
        _wait_for("mariadbd", sock.exists)
        sql = ("CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e", sql], check=True,
                       capture_output=True, timeout=60)

    def _slurmdbd(self) -> None:
        conf = self.root / "slurmdbd.conf"
        conf.write_text("\n".join([
            "AuthType=auth/munge", f"AuthInfo=socket={self.socket}", "DbdHost=localhost", "DbdAddr=127.0.0.1",
            f"DbdPort={self.ports['dbd']}", "SlurmUser=root", f"PidFile={self.root / 'slurmdbd.pid'}",
            f"LogFile={self.root / 'log' / 'slurmdbd.log'}", "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1", f"StoragePort={self.ports['db']}", "StorageUser=slurm", "StoragePass=slurm",
            "StorageLoc=slurm_acct_db", "",
        ]))
        conf.chmod(0o600)
        self._write_slurm_conf()
        self._spawn("slurmdbd", "slurmdbd", "-D")  # reads slurmdbd.conf beside $SLURM_CONF
        _wait_for("slurmdbd", lambda: _answers("sacctmgr", "-n", "list", "cluster", env=self.env), timeout=120)
        subprocess.run(["sacctmgr", "-i", "add", "cluster", "dlruncheck"], env=self.env, capture_output=True,
                       timeout=60, check=False)

    def _write_slurm_conf(self) -> None:
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
        host = node.split()[0].split("=", 1)[1]
        fields = dict(f.split("=", 1) for f in node.split()[1:])
        fields["RealMemory"] = str(int(fields.get("RealMemory", "4096")) * 3 // 4)
        node_line = " ".join([f"NodeName={host}", "NodeAddr=127.0.0.1", *(f"{k}={v}" for k, v in fields.items())])
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        (self.root / "plugstack.conf").write_text("")
        log = self.root / "log"
        (self.root / "slurm.conf").write_text("\n".join([
            "ClusterName=dlruncheck", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root", "SlurmdUser=root",
            f"SlurmctldPort={self.ports['ctld']}", f"SlurmdPort={self.ports['slurmd']}",
            # cred_expire: a requeued job may start again after 11 s instead of SLURM's 121 s.
            "AuthType=auth/munge", f"AuthInfo=socket={self.socket},cred_expire=10", "CredType=cred/munge",
            f"StateSaveLocation={self.root / 'state'}", f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}", f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={log / 'slurmctld.log'}", f"SlurmdLogFile={log / 'slurmd.log'}",
            f"PlugStackConfig={self.root / 'plugstack.conf'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "SchedulerType=sched/backfill",
            "SchedulerParameters=bf_interval=5",  # a requeued job starts again within seconds of its hold
            "MpiDefault=none", "ReturnToService=2", "JobRequeue=1", "KillWait=5", "InactiveLimit=0",
            "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={self.ports['dbd']}", "JobCompType=jobcomp/none",
            f"AccountingStoragePass={self.socket}",  # the munge socket of clients that talk to slurmdbd
            node_line, f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP", "",
        ]))

    def _slurm(self) -> None:
        self._spawn("slurmctld", "slurmctld", "-D", "-i")
        _wait_for("slurmctld", lambda: _answers("scontrol", "ping", env=self.env))
        self._spawn("slurmd", "slurmd", "-D")

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True).stdout
            return out.strip() in ("idle", "mix")

        _wait_for("the SLURM node", idle, timeout=90)


# ----------------------------------------------------------------------------- the checks


class Checks:
    """The checks, run with ``dlrun`` against the cluster that ``env`` points at."""

    def __init__(self, work: Path, env: dict[str, str], *, partition: str = PARTITION,
                 cluster: ThrowawayCluster | None = None) -> None:
        self.work, self.env = work, {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "CI": "1"}
        self.partition, self.cluster = partition, cluster
        self.env.pop("DLRUN_DEBUG", None)
        self.measured: dict[str, str] = {}

    def dlrun(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*dlrun_command(), *args], cwd=self.work, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    @contextmanager
    def started(self, *args: str) -> Iterator[subprocess.Popen]:
        """``dlrun ARGS`` running in the background; killed on the way out if still running."""
        proc = subprocess.Popen([*dlrun_command(), *args], cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def sweep(self, name: str, *args: str) -> list[str]:
        return ["-m", "hydra/launcher=slurm_cpu", f"hydra.launcher.partition={self.partition}",
                f"hydra.sweep.dir={self.work / name}", *QUIET, *args]

    def check_sweep(self) -> str | None:
        """Four jobs, the CPU preset with only the partition given: all ok, each with its job id."""
        start = time.monotonic()
        proc = self.dlrun(*self.sweep("sweep", "seed=0,1,2,3", "trainer.epochs=5"))
        self.measured["sweep"] = f"{time.monotonic() - start:.0f} s"
        if proc.returncode != 0:
            return f"exit code {proc.returncode}: {_tail(proc.stderr)}"
        board = _leaderboard(self.work / "sweep")
        if list(board["status"]) != ["ok"] * 4:
            return f"statuses {list(board['status'])}, expected 4 x ok"
        ids = [_metrics(Path(d)).get("slurm_job_id") for d in board["run_dir"]]
        if None in ids or len(set(ids)) != 4:
            return f"SLURM job ids in metrics.json: {ids}"
        if "slurm_job" not in board or sorted(board["slurm_job"]) != sorted(ids):
            return f"the leaderboard's slurm_job column does not match metrics.json: {ids}"
        if proc.stderr.count("Bypassing") > 1:
            return "submitit's polling warning was shown more than once"
        return None

    def check_cancel(self) -> str | None:
        """One job cancelled while it runs: it is failed (cancelled), the other ok, exit 1 within a minute."""
        return self._cancel_one("cancel")

    def check_no_accounting(self) -> str | None:
        """The same with slurmdbd stopped (sacct fails, as where accounting is off): the sweep still
        ends within a minute, from squeue's states, and shows submitit's polling warning once."""
        self.cluster.stop_accounting()
        return self._cancel_one("no_accounting", warned_once=True)

    def _cancel_one(self, name: str, *, warned_once: bool = False) -> str | None:
        args = self.sweep(name, "hydra.launcher.cpus_per_task=1", f"trainer.epochs=5,{LONG_EPOCHS}")
        with self.started(*args) as proc:
            long_job = self._running_job(name, index=1, timeout=180)
            subprocess.run(["scancel", long_job], env=self.env, check=True, timeout=30)
            cancelled = time.monotonic()
            out, err = proc.communicate(timeout=120)
        took = time.monotonic() - cancelled
        self.measured[name] = f"exit {proc.returncode} {took:.0f} s after scancel"
        if proc.returncode != 1:
            return f"exit code {proc.returncode}, expected 1: {_tail(err)}"
        if took > 60:
            return f"the sweep ended {took:.0f} s after the cancel, more than a minute"
        board = _leaderboard(self.work / name).set_index("trainer.epochs")
        short, long = board.loc[5], board.loc[LONG_EPOCHS]
        if short["status"] != "ok":
            return f"the job that was not cancelled is {short['status']}"
        if long["status"] != "failed" or "cancelled" not in str(long["message"]):
            return f"the cancelled job is {long['status']} ({long['message']})"
        if str(long.get("slurm_job")) != long_job:
            return f"the cancelled job's leaderboard row names SLURM job {long.get('slurm_job')}, not {long_job}"
        if warned_once:
            shown = [ln for ln in (out + err).splitlines() if "Bypassing sacct error" in ln]
            self.measured[name] += f"; {len(shown)} line(s) of sacct warnings"
            if len(shown) != 1:
                return f"submitit's sacct warning was printed {len(shown)} times, not once"
        self.measured[name] += f"; leaderboard: {long['message']}"
        return None

    def check_requeue(self) -> str | None:
        """A job past its 1-minute limit is requeued, resumes, and equals an uninterrupted run."""
        epochs = f"trainer.epochs={self._epochs_for(REQUEUE_SECONDS)}"
        # Each start of a job with a 1-minute limit runs 20 to 50 s (slurmctld warns it at its
        # next 30-second check), 10 of them starting up: allow enough requeues.
        args = self.sweep("requeue", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=1",
                          "hydra.launcher.max_num_timeout=12", "seed=0", epochs)
        with self.started(*args) as sweep:
            start = time.monotonic()
            reference = self.dlrun("seed=0", epochs, *QUIET, f"hydra.run.dir={self.work / 'uninterrupted'}")
            _, stderr = sweep.communicate(timeout=900)
        took = time.monotonic() - start
        if reference.returncode != 0:
            return f"the uninterrupted run failed: {_tail(reference.stderr)}"
        ref = _metrics(self.work / "uninterrupted")
        if sweep.returncode != 0:
            return f"exit code {sweep.returncode}: {_tail(stderr)}"
        run = _metrics(self.work / "requeue" / "0")
        job = run.get("slurm_job_id")
        restarts = _restarts(job, self.env)
        self.measured["requeue"] = (f"{took:.0f} s, requeued {restarts} time(s); uninterrupted run "
                                    f"{ref['fit_seconds']:.0f} s of training ({ref['epochs_run']} epochs)")
        # Requeued: the job ran past its limit (other work on the machine may make its uninterrupted
        # twin, beside it, faster or slower than the job itself).
        if restarts < 1:
            return f"SLURM job {job} was never requeued (it trained in under its 1-minute limit)"
        # A start from epoch 0 would give the same metrics too (the runs are deterministic):
        # the run's log says where each start continued from.
        resumed = (self.work / "requeue" / "0" / "run.log").read_text().count("resumed from")
        self.measured["requeue"] += f"; resumed from its checkpoint {resumed} time(s)"
        if resumed < 1:
            return "the requeued job started again from epoch 0, not from its checkpoint"
        if run["status"] != "ok":
            return f"the requeued job is {run['status']} ({run.get('message')})"
        same = {s: run[s] == ref[s] for s in ("train", "val", "test")} | {"epochs_run": run["epochs_run"] ==
                                                                          ref["epochs_run"]}
        if not all(same.values()):
            return f"differs from the uninterrupted run in {[k for k, v in same.items() if not v]}"
        self.measured["requeue"] += f"; val {run['headline']} {run['val'][run['headline']]:.4f} in both"
        return None

    def _epochs_for(self, seconds: float) -> int:
        """Epochs of the default run (one thread) that train about ``seconds`` on this machine now,
        two at once as in the check (the SLURM job beside its uninterrupted twin)."""
        probes = [self.work / f"probe{i}" for i in (0, 1)]
        procs = [subprocess.Popen([*dlrun_command(), "trainer.epochs=2000", *QUIET, f"hydra.run.dir={p}"],
                                  cwd=self.work, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for p in probes]
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"the timing run failed: {_tail(err)}")
        per_epoch = max(_metrics(p)["seconds_per_epoch"] for p in probes)
        return int(seconds / per_epoch) // 1000 * 1000 + 1000

    def _running_job(self, sweep: str, *, index: int, timeout: float) -> str:
        """The SLURM id of the sweep's job ``index`` once it runs and has begun training."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = subprocess.run(["squeue", "-h", "-r", "-t", "R", "-o", "%i"], env=self.env, capture_output=True,
                                 text=True).stdout.split()
            found = [j for j in out if j.endswith(f"_{index}")]
            if found and (self.work / sweep / str(index) / "history.csv").is_file():
                return found[0]
            time.sleep(1)
        raise RuntimeError(f"job {index} of the {sweep} sweep was not running after {timeout:.0f} s")


CHECKS = ("sweep", "cancel", "requeue")
# Checks that need the throwaway cluster (they stop a daemon): last, as they leave it so.
OWN_CLUSTER_CHECKS = ("no_accounting",)


def _restarts(job: str | None, env: dict[str, str]) -> int:
    """How many times SLURM requeued ``job`` (sacct lists each earlier start as REQUEUED)."""
    if not job:
        return 0
    out = subprocess.run(["sacct", "-n", "-X", "-D", "-j", job, "-o", "State", "--parsable2"], env=env,
                         capture_output=True, text=True).stdout
    return sum(line.strip().startswith("REQUEUED") for line in out.splitlines())


def _leaderboard(sweep: Path) -> pd.DataFrame:
    return pd.read_csv(sweep / "leaderboard.csv", dtype={"slurm_job": str})


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _tail(text: str, n: int = 400) -> str:
    return " ".join(text.strip()[-n:].split())


def _raise_keyboard_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start a cluster when none answers, run the checks, print ``N passed, N failed``."""
    parser = argparse.ArgumentParser(prog="python -m dlrun.tools.cluster_check", description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only checks whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, run folders)")
    parser.add_argument("--partition", default=PARTITION,
                        help=f"the partition on a cluster that answers (default {PARTITION}, the throwaway one's)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dlrun-cluster-"))
    cluster = None
    results: dict[str, str | None] = {}
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # stop the cluster on the way out
    try:
        env = dict(os.environ)
        if not _answers("sinfo", "-h"):
            install_packages()
            cluster = ThrowawayCluster(work / "slurm")
            (work / "slurm").mkdir()
            started = time.monotonic()
            print("no SLURM answers: starting a throwaway single-node cluster", flush=True)
            cluster.start()
            print(f"cluster up in {time.monotonic() - started:.0f} s (config and logs in {work / 'slurm'})",
                  flush=True)
            env = cluster.env
        checks = Checks(work / "runs", env, partition=args.partition, cluster=cluster)
        checks.work.mkdir()
        names = [*CHECKS, *(OWN_CLUSTER_CHECKS if cluster is not None else ())]
        for name in (c for c in names if args.k in c):
            try:
                results[name] = getattr(checks, f"check_{name}")()
            except (RuntimeError, OSError, subprocess.SubprocessError, KeyError, ValueError) as err:
                results[name] = f"{type(err).__name__}: {err}"
            measured = checks.measured.get(name)
            reason = results[name]
            print(f"{'ok  ' if reason is None else 'FAIL'} {name}" + (f": {reason}" if reason else "")
                  + (f" [{measured}]" if measured else ""), flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = sum(r is not None for r in results.values())
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
