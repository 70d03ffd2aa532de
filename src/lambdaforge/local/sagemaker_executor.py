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
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lambdaforge.artifact import pack_dir, safe_extract
from lambdaforge.aws import split_s3_uri
from lambdaforge.errors import NoObjectsError
from lambdaforge.local.errors import LocalCloudError
from lambdaforge.s3transfer import download_file, download_prefix, upload_file, upload_folder
from lambdaforge.training.runner import JobTree, run_entry_point

STOP_GRACE_SECONDS = 120.0  # what SageMaker gives a container between SIGTERM and SIGKILL
LineSink = Callable[[str, str], None]  # (job name, line)
RoleCredentials = Callable[[str, str], dict[str, str]]  # (role ARN, session name) -> AWS_* variables


def _kill_if_running(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()


class SageMakerExecutor:
    def __init__(self, *, s3: Callable[[dict[str, str]], Any], logs: Any, state_dir: Path, region: str,
                 account: str, sink: LineSink, credentials: RoleCredentials) -> None:
        self.s3_for = s3  # an S3 client for a set of credentials: the job's data moves as its role
        self.credentials = credentials
        self.logs = logs
        self.state_dir = state_dir
        self.region = region
        self.account = account
        self.sink = sink
        self._procs: dict[str, subprocess.Popen[str]] = {}
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
        self._stopping[name] = secondary
        job.training_job_status = job.secondary_status = "Stopping"
        self._signal(name)

    def _signal(self, name: str) -> None:
        proc = self._procs.get(name)
        if proc and proc.poll() is None:
            proc.terminate()
            killer = threading.Timer(STOP_GRACE_SECONDS, _kill_if_running, args=(proc,))
            killer.daemon = True
            killer.start()

    # --- the job
    def _run(self, job: Any) -> None:
        name = job.training_job_name
        root = self.state_dir / "sagemaker" / name
        stream = f"{name}/algo-1-{int(time.time())}"
        log_group = "/aws/sagemaker/TrainingJobs"
        self._ensure_log_stream(log_group, stream)
        buffered: list[str] = []
        metrics: dict[str, float] = self.live_metrics.setdefault(name, {})
        on_line = self._line_handler(job, metrics, buffered, lambda: self._flush_logs(log_group, stream, buffered))
        try:
            role = self.credentials(job.role_arn, f"SageMaker-{name}"[:64])
            s3 = self.s3_for(role)
            code, reason, tree = self._attempts(job, s3, root, on_line, role)
            job.final_metric_data_list = [{"MetricName": k, "Value": v, "Timestamp": datetime.now(UTC)}
                                          for k, v in sorted(metrics.items())]
            if name in self._stopping:
                self._finish(job, "Stopped", None, secondary=self._stopping[name])
                return
            if code != 0:
                self._finish(job, "Failed", reason or f"AlgorithmError: the training process exited with code {code}")
                return
            job.secondary_status = "Uploading"
            tarball = pack_dir(tree.model_dir, root / "model.tar.gz")
            upload_file(s3, tarball, *split_s3_uri(job.model_artifacts["S3ModelArtifacts"]))
            self._finish(job, "Completed", None)
        except Exception as exc:
            on_line(f"[local sagemaker] {type(exc).__name__}: {exc}")
            self._finish(job, "Failed", f"ClientError: {exc}")
        finally:
            self._flush_logs(log_group, stream, buffered)

    def _attempts(self, job: Any, s3: Any, root: Path, on_line: Callable[[str], None],
                  role: dict[str, str]) -> tuple[int, str | None, JobTree]:
        """Train; after a spot interruption, wait for capacity and train again on a fresh instance that
        has only what the checkpoint folder in S3 gives back. Billable time is the time on instances."""
        name = job.training_job_name
        checkpoint_uri = (job.checkpoint_config or {}).get("S3Uri")
        max_runtime = float((job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400))
        billable = 0.0
        while True:
            shutil.rmtree(root, ignore_errors=True)
            tree = JobTree(root / "opt" / "ml")
            channels, code_dir, program = self._prepare(job, s3, root, tree, on_line)
            began = time.monotonic()
            with self._syncing(s3, tree.checkpoint_dir, checkpoint_uri):
                code, reason = self._train(job, tree, channels, code_dir, program, on_line, role,
                                           max_runtime - billable)
            billable += time.monotonic() - began
            self._billable[name] = billable
            if name not in self._interrupted:
                return code, reason, tree
            self._interrupted.discard(name)
            job.secondary_status = "Interrupted"
            on_line(f"[local sagemaker] spot capacity reclaimed; restarting in {self.spot_restart_seconds:g} s")
            if self._stopped_while_waiting(name):
                return code, reason, tree
            job.secondary_status = "Starting"

    def _stopped_while_waiting(self, name: str) -> bool:
        deadline = time.monotonic() + self.spot_restart_seconds
        while time.monotonic() < deadline:
            if name in self._stopping:
                return True
            time.sleep(0.2)
        return name in self._stopping

    def interrupt(self, name: str) -> None:
        """Inject a spot interruption: the instance is reclaimed (the process killed, no warning)."""
        job = self.backend().training_jobs.get(name)
        if job is None or job.training_job_status != "InProgress" or not job.enable_managed_spot_training:
            raise LocalCloudError(f"{name}: only a running managed-spot job can be interrupted")
        self._interrupted.add(name)
        proc = self._procs.get(name)
        if proc and proc.poll() is None:
            proc.kill()

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
                 on_line: Callable[[str], None]) -> tuple[dict[str, Path], Path, str]:
        """The /opt/ml tree as SageMaker lays it out: channels, hyperparameters, checkpoints, the source bundle."""
        job.secondary_status = "Downloading"
        channels: dict[str, Path] = {}
        for channel in job.input_data_config:
            local = root / "channels" / channel["ChannelName"]
            download_prefix(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], local)
            channels[channel["ChannelName"]] = local
        hps = dict(job.hyper_parameters or {})
        program = json.loads(hps.get("sagemaker_program", '"train.py"'))
        source_uri = json.loads(hps["sagemaker_submit_directory"])
        tree.prepare(channels, hps, encoded=True)
        checkpoint_uri = (job.checkpoint_config or {}).get("S3Uri")
        if checkpoint_uri:
            try:
                download_prefix(s3, checkpoint_uri, tree.checkpoint_dir)
                on_line(f"[local sagemaker] restored checkpoints from {checkpoint_uri}")
            except NoObjectsError:
                pass
        code_dir = root / "code"
        bundle = root / "sourcedir.tar.gz"
        download_file(s3, source_uri, bundle)
        safe_extract(bundle, code_dir)
        return channels, code_dir, str(program)

    def _train(self, job: Any, tree: JobTree, channels: dict[str, Path], code_dir: Path, program: str,
               on_line: Callable[[str], None], role: dict[str, str], runtime_left: float) -> tuple[int, str | None]:
        """The entry point under the SageMaker contract, stopped at the job's MaxRuntimeInSeconds."""
        name = job.training_job_name
        if name in self._stopping:  # stopped while its data was downloading
            return 143, None
        job.secondary_status = "Training"
        timer = threading.Timer(max(0.0, runtime_left), lambda: self._stop_quietly(name, "MaxRuntimeExceeded"))
        timer.start()
        try:
            return run_entry_point(
                tree, channels, name, on_line=on_line, command=[sys.executable, program], cwd=code_dir,
                # no SM_NUM_GPUS: the harness counts the GPUs itself (torch is not loaded here)
                # the container holds the job role's credentials, as SageMaker's does
                extra_env={"PYTHONPATH": str(code_dir), "SM_TRAINING_ENV": json.dumps({"job_name": name}), **role},
                process_started=lambda p: self._procs.__setitem__(name, p))
        finally:
            timer.cancel()

    @contextlib.contextmanager
    def _syncing(self, s3: Any, folder: Path, uri: str | None) -> Iterator[None]:
        """While the job trains, its checkpoint folder is synced to S3 every few seconds, as SageMaker does,
        and once more when the block ends (that last sync's errors are the job's)."""
        done = threading.Event()

        def loop() -> None:
            while not done.wait(self.checkpoint_sync_seconds):
                if folder.is_dir():
                    with contextlib.suppress(Exception):  # a file written mid-sync: the next round has it
                        self._sync_checkpoints(s3, folder, str(uri))

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
                self._sync_checkpoints(s3, folder, uri)

    @staticmethod
    def _sync_checkpoints(s3: Any, folder: Path, uri: str) -> None:
        """As SageMaker syncs /opt/ml/checkpoints: new files uploaded, files the job deleted deleted."""
        bucket, prefix = split_s3_uri(uri)
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        upload_folder(s3, folder, bucket, prefix)
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"][len(prefix):] not in present:
                    s3.delete_object(Bucket=bucket, Key=obj["Key"])

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
        for name in list(self._procs):
            self._signal(name)
        for thread in self._threads:
            thread.join(timeout=timeout)
