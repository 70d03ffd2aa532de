"""The local SageMaker executor: a CreateTrainingJob really trains.

moto records training jobs and marks them Completed at once, writing no artifact. This fills
exactly that gap: the job's own source bundle (sagemaker_submit_directory) runs under the
SageMaker contract (an /opt/ml tree, channels downloaded from S3, hyperparameters as SageMaker
encodes them, checkpoints restored from and saved to S3), on a GPU when there is one. The job is
InProgress meanwhile, then Completed with model.tar.gz uploaded to its output path, or Failed with
the FailureReason the harness wrote. Log lines go to CloudWatch Logs, metrics are read with the
job's own MetricDefinitions.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lambdaforge import envvars
from lambdaforge.artifact import pack_dir, safe_extract
from lambdaforge.aws import split_s3_uri
from lambdaforge.errors import NoObjectsError
from lambdaforge.local.errors import LocalCloudError
from lambdaforge.s3transfer import download_file, download_prefix, upload_file
from lambdaforge.training.runner import JobTree, run_entry_point

STOP_GRACE_SECONDS = 120.0  # what SageMaker gives a container between the stop and SIGKILL
LineSink = Callable[[str, str], None]  # (job name, line)
RoleCredentials = Callable[[str, str], dict[str, str]]  # (role ARN, session name) -> AWS_* variables


HOSTS_SHIM = Path(__file__).resolve().parent / "container"  # its sitecustomize maps algo-N to loopback


def _tree(top: Any) -> list[Any]:
    """The container's processes: the top one and every descendant (torchrun starts its workers in their
    own sessions, so a process group would miss them). `top` is the psutil handle taken while the process
    was certainly alive: psutil then refuses to touch a process that has since reused its PID."""
    import psutil

    try:
        return [top, *top.children(recursive=True)] if top.is_running() else []
    except psutil.Error:
        return []


def _kill_tree(processes: list[Any]) -> None:
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (the local cloud's server, a job's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SageMakerExecutor:
    def __init__(self, *, s3: Callable[[dict[str, str]], Any], logs: Any, state_dir: Path, region: str,
                 account: str, sink: LineSink, credentials: RoleCredentials, endpoint: str = "",
                 container: Path | None = None) -> None:
        self.s3_for = s3  # an S3 client for a set of credentials: the job's data moves as its role
        self.credentials = credentials
        self.logs = logs
        self.state_dir = state_dir
        self.region = region
        self.account = account
        self.sink = sink
        self.endpoint = endpoint  # the local cloud's URL, for a container that reaches S3 itself
        # a Python with the sagemaker-training toolkit (.venv-train): jobs run as AWS's training images run them
        self.container = container
        self._procs: dict[str, list[subprocess.Popen[str]]] = {}  # job -> one process per host
        self._ports: dict[str, int] = {}
        self._lock = threading.Lock()
        self._handles: dict[int, Any] = {}  # Popen pid -> psutil handle, taken at start
        self._failed: set[str] = set()  # jobs one of whose hosts failed: the others are torn down
        self._closing = False
        self.stop_grace_seconds = STOP_GRACE_SECONDS
        self._stopping: dict[str, str] = {}  # job -> the secondary status it ends with once stopped
        self._interrupted: set[str] = set()  # jobs whose instance was just reclaimed (spot)
        self._billable: dict[str, float] = {}  # job -> seconds on instances so far
        self.spot_restart_seconds = 3.0  # how long capacity takes to come back after an interruption
        self.checkpoint_sync_seconds = 2.0
        self._threads: list[threading.Thread] = []
        self.live_metrics: dict[str, dict[str, float]] = {}  # job -> latest value of each metric, while it runs

    def backend(self) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[self.account][self.region]

    def started(self, job: Any, request: dict[str, Any]) -> None:
        """Called right after moto recorded the job: mark it running and train in the background."""
        job.training_job_status = "InProgress"
        job.secondary_status = "Starting"
        job.algorithm_specification["MetricDefinitions"] = list(
            request.get("AlgorithmSpecification", {}).get("MetricDefinitions", []))
        job.final_metric_data_list = []
        job.training_end_time = None
        job.training_start_time = datetime.now(UTC)
        limits = job.stopping_condition or {}
        if job.enable_managed_spot_training and limits.get("MaxWaitTimeInSeconds"):
            # the wait for capacity and the training together; locally the wait is only after interruptions
            wait = threading.Timer(float(limits["MaxWaitTimeInSeconds"]),
                                   self._stop_quietly, args=(job.training_job_name, "MaxWaitTimeExceeded"))
            wait.daemon = True
            wait.start()
        thread = threading.Thread(target=self._run, args=(job,), name=f"train-{job.training_job_name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self, name: str, secondary: str = "Stopped") -> None:
        """StopTrainingJob (or a MaxRuntime/MaxWait limit): Stopping, SIGTERM, 120 s grace, then Stopped.

        SageMaker gives a stopped job no FailureReason; its SecondaryStatus says why it stopped.
        """
        job = self.backend().training_jobs.get(name)
        if job is None or job.training_job_status != "InProgress":
            from moto.sagemaker.exceptions import ValidationError

            state = job.training_job_status if job is not None else "unknown"
            raise ValidationError(message=f"The training job {name} is {state}; only InProgress jobs can be stopped.")
        with self._lock:
            self._stopping[name] = secondary
        job.training_job_status = job.secondary_status = "Stopping"
        self._signal(name)

    def _processes(self, proc: subprocess.Popen[str]) -> list[Any]:
        handle = self._handles.get(proc.pid)
        return _tree(handle) if handle is not None and proc.poll() is None else []

    def _signal(self, name: str) -> None:
        for proc in list(self._procs.get(name, [])):
            self._stop_process(name, proc)

    def _stop_process(self, name: str, proc: subprocess.Popen[str]) -> None:
        """What a stop does to one host's container. docker stop: SIGTERM to PID 1, SIGKILL to everything
        after the grace period. In AWS's PyTorch training image PID 1 is bash (start_with_right_hostname.sh),
        which ignores SIGTERM and does not forward it: the toolkit and the script never see it, so in
        container mode only the SIGKILL comes. Without the container, PID 1 is the program itself."""
        if proc.poll() is not None:
            return
        processes = self._processes(proc)  # before the signal: a dying parent orphans its children
        if not self._in_container(name):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

        def kill_after_grace() -> None:  # whatever is left of the container, descendants included
            _kill_tree([*self._processes(proc), *processes])

        killer = threading.Timer(self.stop_grace_seconds, kill_after_grace)
        killer.daemon = True
        killer.start()

    def _started(self, name: str, proc: subprocess.Popen[str]) -> None:
        """A host's container started: a stop or interruption that came while it was starting applies now."""
        import psutil

        with self._lock:
            with contextlib.suppress(psutil.Error):
                self._handles[proc.pid] = psutil.Process(proc.pid)
            self._procs.setdefault(name, []).append(proc)
            stopping, interrupted = name in self._stopping, name in self._interrupted
            gone = self._closing or name in self._failed
        if interrupted or gone:
            _kill_tree(self._processes(proc))
        elif stopping:
            self._stop_process(name, proc)

    # --- the job
    def _run(self, job: Any) -> None:
        name = job.training_job_name
        root = self.state_dir / "sagemaker" / name
        count = int((job.resource_config or {}).get("InstanceCount", 1))
        hosts = tuple(f"algo-{i}" for i in range(1, count + 1))
        log_group = "/aws/sagemaker/TrainingJobs"
        started = int(time.time())
        metrics: dict[str, float] = self.live_metrics.setdefault(name, {})
        streams: dict[str, tuple[str, list[str]]] = {}
        handlers: dict[str, Callable[[str], None]] = {}
        for host in hosts:  # one log stream per host, as SageMaker writes them
            stream, buffered = f"{name}/{host}-{started}", list[str]()
            self._ensure_log_stream(log_group, stream)
            streams[host] = (stream, buffered)
            handlers[host] = self._line_handler(job, metrics, buffered,
                                                functools.partial(self._flush_logs, log_group, stream, buffered))
        leader = handlers[hosts[0]]
        try:
            role = self.credentials(job.role_arn, f"SageMaker-{name}"[:64])
            s3 = self.s3_for(role)
            code, reason, tree = self._attempts(job, s3, root, hosts, handlers, role)
            job.final_metric_data_list = [{"MetricName": k, "Value": v, "Timestamp": datetime.now(UTC)}
                                          for k, v in sorted(metrics.items())]
            if name in self._stopping:
                self._finish(job, "Stopped", None, secondary=self._stopping[name])
                return
            if code != 0:
                self._finish(job, "Failed", reason or f"AlgorithmError: the training process exited with code {code}")
                return
            job.secondary_status = "Uploading"
            # SageMaker puts what every host left in /opt/ml/model into the one model.tar.gz (the harness
            # writes only on the leader); on a clash, the leader's file is the one kept here
            for host in hosts[1:]:
                other = root / host / "opt" / "ml" / "model"
                if other.is_dir() and any(other.iterdir()):
                    leader(f"[local sagemaker] {host} wrote into /opt/ml/model too: merged into model.tar.gz")
                    shutil.copytree(other, tree.model_dir, dirs_exist_ok=True,
                                    ignore=lambda d, names, other=other: [
                                        n for n in names if (tree.model_dir / Path(d).relative_to(other) / n).exists()
                                        and not (Path(d) / n).is_dir()])
            tarball = pack_dir(tree.model_dir, root / "model.tar.gz")
            upload_file(s3, tarball, *split_s3_uri(job.model_artifacts["S3ModelArtifacts"]))
            self._finish(job, "Completed", None)
        except Exception as exc:
            leader(f"[local sagemaker] {type(exc).__name__}: {exc}")
            self._finish(job, "Failed", f"ClientError: {exc}")
        finally:
            for stream, buffered in streams.values():
                self._flush_logs(log_group, stream, buffered)

    def _attempts(self, job: Any, s3: Any, root: Path, hosts: tuple[str, ...],
                  handlers: dict[str, Callable[[str], None]], role: dict[str, str]) -> tuple[int, str | None, JobTree]:
        """Train; after a spot interruption, wait for capacity and train again on fresh instances that
        have only what the checkpoint folder in S3 gives back. Billable time is the time on instances.
        Returns the outcome and the leader's tree."""
        name = job.training_job_name
        checkpoint_uri = (job.checkpoint_config or {}).get("S3Uri")
        max_runtime = float((job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400))
        leader = handlers[hosts[0]]
        billable = 0.0
        while True:
            shutil.rmtree(root, ignore_errors=True)
            trees = {host: JobTree(root / host / "opt" / "ml", hosts=hosts, current_host=host) for host in hosts}
            channels: dict[str, dict[str, Path]] = {}
            for host, tree in trees.items():
                channels[host] = self._prepare(job, s3, root / host, tree, handlers[host])
            began = time.monotonic()
            with contextlib.ExitStack() as syncs:
                for tree in trees.values():  # every host syncs its own checkpoint folder
                    syncs.enter_context(self._syncing(s3, tree.checkpoint_dir, checkpoint_uri))
                code, reason = self._train(job, trees, channels, handlers, role, max_runtime - billable)
            billable += time.monotonic() - began
            self._billable[name] = billable
            if name not in self._interrupted:
                return code, reason, trees[hosts[0]]
            self._interrupted.discard(name)
            job.secondary_status = "Interrupted"
            leader(f"[local sagemaker] spot capacity reclaimed; restarting in {self.spot_restart_seconds:g} s")
            if self._stopped_while_waiting(name) or self._closing:
                return code, reason, trees[hosts[0]]
            job.secondary_status = "Starting"

    def _stopped_while_waiting(self, name: str) -> bool:
        deadline = time.monotonic() + self.spot_restart_seconds
        while time.monotonic() < deadline:
            if name in self._stopping:
                return True
            time.sleep(0.2)
        return name in self._stopping

    def interrupt(self, name: str) -> None:
        """Inject a spot interruption: the instances are reclaimed (every process killed, no warning)."""
        job = self.backend().training_jobs.get(name)
        if job is None or job.training_job_status != "InProgress" or not job.enable_managed_spot_training:
            raise LocalCloudError(f"{name}: only a running managed-spot job can be interrupted")
        with self._lock:
            self._interrupted.add(name)
            procs = list(self._procs.get(name, []))
        for proc in procs:
            _kill_tree(self._processes(proc))

    def _line_handler(self, job: Any, metrics: dict[str, float], buffered: list[str],
                      flush: Callable[[], None]) -> Callable[[str], None]:
        """Each log line: to the sink, to the CloudWatch buffer, and through the job's metric regexes."""
        name = job.training_job_name
        definitions = job.algorithm_specification.get("MetricDefinitions", [])
        regexes = [(d["Name"], re.compile(d["Regex"])) for d in definitions]

        def on_line(line: str) -> None:
            self.sink(name, line)
            buffered.append(line)
            for metric, regex in regexes:
                match = regex.search(line)
                if match:
                    with contextlib.suppress(IndexError, ValueError):  # a regex without a number group
                        metrics[metric] = float(match.group(1))
            if len(buffered) >= 20:
                flush()

        return on_line

    def _prepare(self, job: Any, s3: Any, root: Path, tree: JobTree,
                 on_line: Callable[[str], None]) -> dict[str, Path]:
        """One host's /opt/ml tree as SageMaker lays it out: channels (fully replicated), hyperparameters,
        resource config, checkpoints restored. The source bundle is the container's to fetch (`_command`)."""
        job.secondary_status = "Downloading"
        channels: dict[str, Path] = {}
        for channel in job.input_data_config:
            local = root / "channels" / channel["ChannelName"]
            download_prefix(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], local)
            channels[channel["ChannelName"]] = local
        tree.prepare(channels, dict(job.hyper_parameters or {}), encoded=True)
        checkpoint_uri = (job.checkpoint_config or {}).get("S3Uri")
        if checkpoint_uri:
            try:
                download_prefix(s3, checkpoint_uri, tree.checkpoint_dir)
                on_line(f"[local sagemaker] restored checkpoints from {checkpoint_uri}")
            except NoObjectsError:
                pass
        return channels

    def _command(self, job: Any, s3: Any, tree: JobTree,
                 role: dict[str, str]) -> tuple[list[str], Path, dict[str, str]]:
        """What the container runs. With a container stand-in: AWS's `sagemaker-training` toolkit, which
        fetches sagemaker_submit_directory from S3, pip-installs its requirements.txt and runs the program.
        Without: the same bundle's program, fetched here, in this interpreter."""
        hps = dict(job.hyper_parameters or {})
        program = str(json.loads(hps.get("sagemaker_program", '"train.py"')))
        source_uri = json.loads(hps["sagemaker_submit_directory"])
        name = job.training_job_name
        code_dir = tree.root / "code"
        env = {**role, "SM_TRAINING_ENV": json.dumps({"job_name": name}), "AWS_REGION": self.region,
               "AWS_DEFAULT_REGION": self.region}
        if len(tree.hosts) > 1:
            # every host is this machine: torchrun's rendezvous (C++, no sitecustomize) meets on loopback
            env[envvars.MASTER_ADDR] = "127.0.0.1"
            env[envvars.MASTER_PORT] = str(self._port_for(name))
        if self._in_container(name):
            env.update({
                "SAGEMAKER_BASE_DIR": str(tree.root), "S3_ENDPOINT_URL": self.endpoint,
                # what AWS's PyTorch training image sets: its framework module runs the generic toolkit
                "SAGEMAKER_TRAINING_MODULE": "sagemaker_pytorch_container.training:main",
                # SageMaker's host names resolve on every host (the toolkit waits until they do)
                "PYTHONPATH": str(HOSTS_SHIM),
                # the image's pip knows PyPI only: none of this machine's pip configuration or wheel folders
                "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
            return [str(self.container), "-m", "sagemaker_training.cli.train"], tree.root, env
        bundle = tree.root.parent.parent / "sourcedir.tar.gz"
        download_file(s3, source_uri, bundle)
        safe_extract(bundle, code_dir)
        # no SM_NUM_GPUS: the harness counts the GPUs itself (torch is not loaded here)
        return [sys.executable, program], code_dir, {**env, "PYTHONPATH": str(code_dir)}

    def _in_container(self, name: str) -> bool:
        """Whether the job runs through the toolkit: when a container stand-in is configured, for one host.
        Several hosts run without it: the PyTorch image's module sets MASTER_ADDR=algo-1, which torchrun's
        C++ rendezvous cannot resolve on this machine (a SageMaker cluster's /etc/hosts has it)."""
        job = self.backend().training_jobs.get(name)
        count = int((job.resource_config or {}).get("InstanceCount", 1)) if job is not None else 1
        return self.container is not None and count == 1

    def _fail_fast(self, name: str, failed: str) -> None:
        """SageMaker fails the job as soon as one host's algorithm fails and tears the cluster down: the
        other hosts (also one still starting) must not wait in a rendezvous until their timeout."""
        with self._lock:
            if name in self._interrupted:  # the instances were reclaimed: every host died, none failed
                return
            self._failed.add(name)
            procs = [p for p in self._procs.get(name, []) if p.poll() is None]
        if procs:
            self.sink(name, f"[local sagemaker] {failed} failed: stopping the job's other hosts")
        for proc in procs:
            _kill_tree(self._processes(proc))

    def _port_for(self, name: str) -> int:
        if name not in self._ports:
            self._ports[name] = free_port()
        return self._ports[name]

    def _train(self, job: Any, trees: dict[str, JobTree], channels: dict[str, dict[str, Path]],
               handlers: dict[str, Callable[[str], None]], role: dict[str, str],
               runtime_left: float) -> tuple[int, str | None]:
        """The container on every host at once, stopped at the job's MaxRuntimeInSeconds. A host that fails
        fails the job; the reason is the leader's if it wrote one, else the first failing host's."""
        name = job.training_job_name
        if name in self._stopping:  # stopped while its data was downloading
            return 143, None
        s3 = self.s3_for(role)
        commands = {host: self._command(job, s3, tree, role) for host, tree in trees.items()}
        job.secondary_status = "Training"
        with self._lock:
            self._procs[name] = []
        results: dict[str, tuple[int, str | None]] = {}

        def host_main(host: str) -> None:
            command, cwd, env = commands[host]
            results[host] = run_entry_point(
                trees[host], channels[host], name, on_line=handlers[host], command=command, cwd=cwd,
                extra_env=env, new_session=True, process_started=lambda proc: self._started(name, proc))
            if results[host][0] != 0 and name not in self._stopping:
                self._fail_fast(name, host)

        timer = threading.Timer(max(0.0, runtime_left), lambda: self._stop_quietly(name, "MaxRuntimeExceeded"))
        timer.start()
        try:
            threads = [threading.Thread(target=host_main, args=(host,), name=f"{name}-{host}", daemon=True)
                       for host in trees]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            timer.cancel()
        hosts = list(trees)
        failed = [h for h in hosts if results.get(h, (1, None))[0] != 0]
        if not failed:
            return 0, None
        first = next((h for h in hosts if h in failed and results.get(h, (1, None))[1]), failed[0])
        code, reason = results.get(first, (1, f"the container on {first} did not start"))
        if reason and len(hosts) > 1:
            reason = f"{first}: {reason}"
        return code, reason

    @contextlib.contextmanager
    def _syncing(self, s3: Any, folder: Path, uri: str | None) -> Iterator[None]:
        """While the job trains, its checkpoint folder is synced to S3 every few seconds, as SageMaker does,
        and once more when the block ends (that last sync's errors are the job's)."""
        done = threading.Event()
        synced = _files(folder)  # what S3 already has (restored at start): unchanged, it is not uploaded again

        def loop() -> None:
            while not done.wait(self.checkpoint_sync_seconds):
                if folder.is_dir():
                    with contextlib.suppress(Exception):  # a file written mid-sync: the next round has it
                        self._sync_checkpoints(s3, folder, str(uri), synced)

        thread = threading.Thread(target=loop, daemon=True) if uri else None
        if thread:
            thread.start()
        try:
            yield
        finally:
            done.set()
            if thread:
                thread.join(timeout=30)
            if uri and folder.is_dir():
                self._sync_checkpoints(s3, folder, uri, synced)

    @staticmethod
    def _sync_checkpoints(s3: Any, folder: Path, uri: str, synced: dict[str, tuple[int, int]]) -> None:
        """As SageMaker syncs /opt/ml/checkpoints: files this host created or changed are uploaded, files it
        deleted are deleted in S3. What other hosts put there is theirs: a host never re-uploads the stale
        copy it restored at start over a newer one, and never deletes what it did not have."""
        bucket, prefix = split_s3_uri(uri)
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        present = _files(folder)
        for rel, stamp in sorted(present.items()):
            if synced.get(rel) != stamp:
                upload_file(s3, folder / rel, bucket, prefix + rel)
                synced[rel] = stamp
        for gone in sorted(set(synced) - set(present)):
            s3.delete_object(Bucket=bucket, Key=prefix + gone)
            del synced[gone]

    def _stop_quietly(self, name: str, secondary: str) -> None:
        with contextlib.suppress(Exception):  # the job ended in the meantime
            self.stop(name, secondary)

    def _finish(self, job: Any, status: str, reason: str | None, secondary: str | None = None) -> None:
        job.training_end_time = datetime.now(UTC)
        seconds = max(1, int((job.training_end_time - job.training_start_time).total_seconds()))
        job.training_time_in_seconds = seconds
        # time on instances: short of the training time by the waits after spot interruptions
        on_instances = int(self._billable.get(job.training_job_name, seconds))
        job.billable_time_in_seconds = max(1, min(seconds, on_instances)) if job.enable_managed_spot_training \
            else seconds
        job.failure_reason = reason[:1024] if reason else None
        job.secondary_status = secondary or status
        job.training_job_status = status

    def _ensure_log_stream(self, group: str, stream: str) -> None:
        with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
            self.logs.create_log_group(logGroupName=group)
        self.logs.create_log_stream(logGroupName=group, logStreamName=stream)

    def _flush_logs(self, group: str, stream: str, lines: list[str]) -> None:
        if not lines:
            return
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line or " "} for line in lines]
        lines.clear()
        try:
            self.logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
        except Exception as exc:  # logs are best effort; the job's outcome does not depend on them
            self.sink(stream, f"[local sagemaker] could not store {len(events)} log lines: {exc}")

    def join(self, timeout: float = 10.0) -> None:
        """The local cloud is closing: stop every job (SIGTERM where a container would get one), give them
        `timeout` seconds, then kill what is left; a host that starts from now on is killed at once."""
        with self._lock:
            self._closing = True
            procs = [p for ps in self._procs.values() for p in ps if p.poll() is None]
        snapshot = [process for proc in procs for process in self._processes(proc)]  # before orphans appear
        for proc in procs:  # SIGTERM reaches a program that is PID 1; in the PyTorch image it would not
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            procs = [p for ps in self._procs.values() for p in ps]
        _kill_tree([*snapshot, *(process for proc in procs for process in self._processes(proc))])


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file below `folder` with its (mtime in ns, size): what tells a changed file from a synced one."""
    if not folder.is_dir():
        return {}
    out: dict[str, tuple[int, int]] = {}
    for path in folder.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # deleted while listed
            if path.is_file():
                stat = path.stat()
                out[path.relative_to(folder).as_posix()] = (stat.st_mtime_ns, stat.st_size)
    return out
