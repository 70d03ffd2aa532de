"""The embedded local cloud: moto's server in this process, the stack from template.yaml, and the
local executors for exactly what moto cannot do (run a Lambda without Docker, really train a
SageMaker job, deliver EventBridge events to Lambda).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lambdaforge import envvars
from lambdaforge.cloud.errors import StackNotFoundError
from lambdaforge.cloud.stack import StackRef
from lambdaforge.local import emf, fidelity
from lambdaforge.local.errors import FunctionError, LocalCloudError
from lambdaforge.local.iam import INTERPRETER_KEY, Enforcer, Principal, normal_hook, s3_hook, trusts
from lambdaforge.local.intrinsics import Resolver
from lambdaforge.local.lambda_executor import LambdaExecutor
from lambdaforge.local.sagemaker_executor import SageMakerExecutor, free_port
from lambdaforge.local.stack import Context, LocalApi, create_stack
from lambdaforge.local.template import translate
from lambdaforge.project import project_root

ACCOUNT = "123456789012"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"  # noqa: S105 - moto's fixed local credentials
# Template parameters that make sense on one machine: fast polling and canaries, an open local API.
# The local executor turns EMF lines into metrics as the function answers: there is no lag to settle.
LOCAL_PARAMETERS = {"TrainingPollSeconds": "2", "CanarySeconds": "3", "MetricsSettleSeconds": "0", "ApiAuth": "NONE",
                    "EnableTracing": "false"}
STATE_FILE = "local.json"


def state_folder(explicit: Path | None = None, root: Path | None = None) -> Path:
    """Where the local cloud keeps its files: explicit, then LAMBDAFORGE_HOME, then the project's .lambdaforge/."""
    if explicit:
        return Path(explicit)
    if os.environ.get(envvars.HOME):
        return Path(os.environ[envvars.HOME])
    return project_root(root) / ".lambdaforge"


def running_stack(state_dir: Path | None = None) -> StackRef:
    """The stack of the local cloud that `lambdaforge up` runs, from the state file it keeps."""
    path = state_folder(state_dir) / STATE_FILE
    if not path.is_file():
        raise StackNotFoundError(f"{path}: no local cloud is running", hint="start one with `lambdaforge up`")
    state = json.loads(path.read_text())
    if not _pid_alive(int(state.get("pid", 0))):
        raise StackNotFoundError(f"{path}: the local cloud that wrote it is not running any more",
                                 hint="start one with `lambdaforge up`")
    return StackRef(name=state["stack"], region=state["region"], outputs=state["outputs"],
                    endpoint_url=state["endpoint"], credentials=(ACCESS_KEY, SECRET_KEY), location="local")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True



class _LogShipper:
    """Function and job log lines into moto's CloudWatch Logs, batched; a ring buffer for diagnostics."""

    def __init__(self, account: str, region: str, echo: Callable[[str], None] | None) -> None:
        self.account, self.region, self.echo = account, region, echo
        self.recent: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=400))
        self._pending: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def line(self, source: str, group: str, stream: str, text: str) -> None:
        self.recent[source].append(text)
        if self.echo:
            self.echo(f"[{source}] {text}")
        with self._lock:
            self._pending[(group, stream)].append({"timestamp": int(time.time() * 1000), "message": text or " "})

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.flush()

    def flush(self) -> None:
        from moto.logs.models import logs_backends

        with self._lock:
            pending, self._pending = self._pending, defaultdict(list)
        backend = logs_backends[self.account][self.region]
        for (group, stream), events in pending.items():
            try:
                if group not in backend.groups:
                    backend.create_log_group(group, {})
                if stream not in backend.groups[group].streams:
                    backend.create_log_stream(group, stream)
                backend.put_log_events(group, stream, events)
            except Exception as exc:  # logs are best effort
                self.recent["local-cloud"].append(f"could not store logs for {group}: {exc}")

    def close(self) -> None:
        self._stop.set()
        self.flush()


class LocalCloud:
    def __init__(self, *, root: Path | None = None, state_dir: Path | None = None,
                 parameters: dict[str, str] | None = None, stack_name: str = "lambdaforge-local",
                 region: str = "us-east-1", echo: Callable[[str], None] | None = None,
                 enforce_iam: bool = True, training_container: Path | None = None) -> None:
        self.root = project_root(root)
        container = training_container or os.environ.get(envvars.TRAINING_CONTAINER) or None
        self.training_container = Path(container) if container else None
        self.state_dir = state_folder(state_dir, self.root)
        self.parameters = {**LOCAL_PARAMETERS, **(parameters or {})}
        self.stack_name = stack_name
        self.region = region
        self.echo = echo
        self.port = 0
        self.endpoint = ""
        self.api = LocalApi()
        self.translated: Any = None  # the template in CloudFormation form, once the stack exists
        self.outputs: dict[str, str] = {}
        self.physical: dict[str, str] = {}
        self._server: Any = None
        self._patcher = fidelity.Patcher()
        self._saved_env: dict[str, str | None] = {}
        self.executor: LambdaExecutor | None = None
        self.trainer: SageMakerExecutor | None = None
        self.logs: _LogShipper | None = None
        self._streams: dict[tuple[str, str], str] = {}
        self.enforce_iam = enforce_iam
        self.iam = Enforcer(ACCOUNT, admin_keys={ACCESS_KEY})
        self._issued: dict[tuple[str, str, str], dict[str, str]] = {}
        self._status_watch: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- lifecycle
    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCloud:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # The Step Functions interpreter calls localhost:$MOTO_PORT; everything here uses these credentials.
        self._set_env({envvars.MOTO_PORT: str(self.port), "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                       "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": self.region})
        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per API call
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.logs = _LogShipper(ACCOUNT, self.region, self.echo)
        worker_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
            "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "TZ": ":UTC",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            envvars.AWS_ENDPOINT_URL: self.endpoint, envvars.CACHE_DIR: str(self.state_dir / "lambda-tmp"),
        }
        self.executor = LambdaExecutor(
            base_env=worker_env, region=self.region, account=ACCOUNT, sink=self._function_log,
            credentials=lambda role, session: self.credentials(role, "lambda.amazonaws.com", session))
        self.trainer = SageMakerExecutor(
            s3=lambda env: self.client_as(env, "s3"), logs=self.client("logs"),
            state_dir=self.state_dir, region=self.region, account=ACCOUNT, sink=self._job_log,
            credentials=lambda role, session: self.credentials(role, "sagemaker.amazonaws.com", session),
            endpoint=self.endpoint, container=self.training_container)
        self._install_patches()
        try:
            self._create_stack()
            self._enforce_iam()
            self._status_watch = threading.Thread(target=self._watch_executions, name="sfn-status", daemon=True)
            self._status_watch.start()
        except Exception:
            self.stop()
            raise
        self.write_state()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._status_watch:
            self._status_watch.join(timeout=5)
        self.iam.enabled = False
        if self.executor:
            self.executor.shutdown()
        if self.trainer:
            self.trainer.join(timeout=5)
        if self.logs:
            self.logs.close()
        self._patcher.restore()
        if self._server is not None:
            self._server.stop()
            self._server = None
            from moto.core.config import default_user_config
            from moto.moto_api._internal.models import moto_api_backend

            moto_api_backend.reset()  # a next cloud in this process starts from an empty account
            default_user_config["stepfunctions"] = {"execute_state_machine": False}
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    # --- clients and state
    def stack_ref(self) -> StackRef:
        """This stack as the commands see any stack: outputs, and clients that reach moto."""
        return StackRef(name=self.stack_name, region=self.region, outputs=self.outputs, endpoint_url=self.endpoint,
                        credentials=(ACCESS_KEY, SECRET_KEY), location="local")

    def client(self, service: str) -> Any:
        return self.stack_ref().client(service)

    def client_as(self, credentials: dict[str, str], service: str) -> Any:
        """A client signing with issued credentials (`credentials()`), not the administrator's."""
        import boto3

        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint,
                             aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                             aws_session_token=credentials["AWS_SESSION_TOKEN"])

    def write_state(self) -> None:
        state = {"endpoint": self.endpoint, "region": self.region, "stack": self.stack_name, "pid": os.getpid(),
                 "outputs": self.outputs, "parameters": self.parameters}
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    # --- the stack
    def _create_stack(self) -> None:
        translated = translate(self.root / "template.yaml", self.parameters)
        self.translated = translated
        resolver = Resolver(translated.cfn, self.parameters, region=self.region, account=ACCOUNT,
                            stack_name=self.stack_name)
        assert self.executor is not None
        ctx = Context(resolver=resolver, translated=translated, clients=self.client, stack_name=self.stack_name,
                      region=self.region, account=ACCOUNT, register_code=self.executor.register)
        create_stack(ctx)
        self.api = ctx.api
        self.physical = dict(resolver.physical)
        for name, output in (translated.cfn.get("Outputs") or {}).items():
            if "Condition" in output and not resolver.condition(output["Condition"]):
                continue
            self.outputs[name] = str(resolver.resolve(output["Value"]))
        self.outputs["ApiUrl"] = ""  # the local gateway's URL is set when it starts

    # --- IAM: each function, the workflow and each training job act as their own role
    def credentials(self, role_arn: str, service: str, session: str) -> dict[str, str]:
        """Temporary credentials of a role for a service its trust policy names, as the service gets them."""
        key = (role_arn, service, session)
        if key not in self._issued:
            from moto.iam.models import iam_backends

            name = role_arn.rsplit("/", 1)[-1]
            role = iam_backends[ACCOUNT]["aws"].get_role(name)
            trust = role.assume_role_policy_document
            if not trusts(json.loads(trust) if isinstance(trust, str) else trust, service):
                raise LocalCloudError(f"{service} cannot assume {role_arn}: its trust policy does not allow it")
            issued = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session[:64])["Credentials"]
            self.iam.register(issued["AccessKeyId"], Principal(name, role_arn, session[:64]))
            self._issued[key] = {"AWS_ACCESS_KEY_ID": issued["AccessKeyId"],
                                 "AWS_SECRET_ACCESS_KEY": issued["SecretAccessKey"],
                                 "AWS_SESSION_TOKEN": issued["SessionToken"]}
        return self._issued[key]

    def _enforce_iam(self) -> None:
        """From here on every request is checked, and the workflow's service calls act as its role."""
        sfn = self.client("stepfunctions")
        roles = {sfn.describe_state_machine(stateMachineArn=m["stateMachineArn"])["roleArn"]
                 for m in sfn.list_state_machines()["stateMachines"]}
        if len(roles) > 1:
            raise LocalCloudError("the local cloud runs one state machine role; the template has several")
        for role_arn in roles:
            self.credentials(role_arn, "states.amazonaws.com", "workflow")  # checks the trust policy
            self.iam.register(INTERPRETER_KEY, Principal(role_arn.rsplit("/", 1)[-1], role_arn, "workflow"))
        self.iam.enabled = self.enforce_iam

    # --- Step Functions' status-change events, which moto does not send
    def _watch_executions(self) -> None:
        """Put "Step Functions Execution Status Change" on the default bus when a run ends badly, as AWS does."""
        sfn, events = self.client("stepfunctions"), self.client("events")
        seen: dict[str, str] = {}
        while not self._stopping.wait(1.0):
            try:
                for machine in sfn.list_state_machines()["stateMachines"]:
                    arn = machine["stateMachineArn"]
                    for execution in sfn.list_executions(stateMachineArn=arn)["executions"]:
                        status = execution["status"]
                        if seen.get(execution["executionArn"]) == status:
                            continue
                        seen[execution["executionArn"]] = status
                        if status in ("FAILED", "TIMED_OUT", "ABORTED"):
                            self._emit_status_change(sfn, events, arn, execution)
            except Exception as exc:  # best effort, as the watcher must outlive a bad poll
                if self.logs:
                    self.logs.recent["local-cloud"].append(f"execution status watch: {exc}")

    def _emit_status_change(self, sfn: Any, events: Any, machine: str, execution: dict[str, Any]) -> None:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        detail = {"executionArn": execution["executionArn"], "stateMachineArn": machine,
                  "name": execution["name"], "status": execution["status"],
                  "startDate": int(described["startDate"].timestamp() * 1000),
                  "stopDate": int(described["stopDate"].timestamp() * 1000) if described.get("stopDate") else None,
                  "input": described.get("input"), "inputDetails": {"included": True}}
        events.put_events(Entries=[{"Source": "aws.states", "DetailType": "Step Functions Execution Status Change",
                                    "Resources": [execution["executionArn"]], "Detail": json.dumps(detail)}])

    # --- the executors' hooks into moto
    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._patcher.patch(owner, name, replacement)

    def _install_patches(self) -> None:
        from moto.awslambda.models import LambdaBackend
        from moto.events.models import Rule
        from moto.sagemaker.models import SageMakerModelBackend

        cloud = self
        original_create = SageMakerModelBackend.create_training_job
        original_send = Rule.send_to_targets

        def invoke(backend: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
                   response_headers: Any) -> bytes:
            assert cloud.executor is not None
            event = json.loads(body) if body else {}
            kind = headers.get("X-Amz-Invocation-Type", "RequestResponse")
            if kind == "Event":
                cloud.executor.invoke_async(function_name, qualifier, event)
                return b""
            if kind == "DryRun":
                return b""
            result = cloud.executor.invoke(function_name, qualifier, event)
            response_headers["x-amz-executed-version"] = result.version
            if result.error:
                response_headers["x-amz-function-error"] = "Unhandled"
            if headers.get("X-Amz-Log-Type") == "Tail":
                tail = "\n".join(result.logs)[-4096:]
                response_headers["x-amz-log-result"] = base64.b64encode(tail.encode()).decode()
            return result.payload

        def create_training_job(backend: Any, *args: Any, **kwargs: Any) -> Any:
            spec = kwargs.get("algorithm_specification") or (args[2] if len(args) > 2 else {})
            request = {"AlgorithmSpecification": {"MetricDefinitions": list(spec.get("MetricDefinitions", []))}}
            job = original_create(backend, *args, **kwargs)
            assert cloud.trainer is not None
            cloud.trainer.started(job, request)
            return job

        def send_to_targets(rule: Any, original_event: Any, transform_input: bool = True) -> None:
            # moto delivers to queues, logs and buses, and raises for Lambda targets: give it the others
            lambdas = [t for t in rule.targets if ":lambda:" in t["Arn"] and ":function:" in t["Arn"]]
            others = [t for t in rule.targets if t not in lambdas]
            if others:
                rule.targets = others
                try:
                    original_send(rule, original_event, transform_input)
                finally:
                    rule.targets = others + lambdas
            if not lambdas or not rule.event_pattern.matches_event(original_event):
                return
            assert cloud.executor is not None
            for target in lambdas:
                event = json.loads(target["Input"]) if target.get("Input") else original_event
                cloud.executor.invoke_async(target["Arn"], None, event)

        self._patch(LambdaBackend, "invoke", invoke)
        self._patch(SageMakerModelBackend, "create_training_job", create_training_job)
        self._patch(Rule, "send_to_targets", send_to_targets)
        self._install_fidelity_patches()

    def _install_fidelity_patches(self) -> None:
        """What moto lets pass or lacks and AWS does not: IAM on every request, StopTrainingJob, the
        checks in `fidelity`."""
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.sagemaker.responses import SageMakerResponse

        cloud = self

        def stop_training_job(response: Any) -> Any:
            from moto.core.responses import EmptyResult

            assert cloud.trainer is not None
            cloud.trainer.stop(response._get_param("TrainingJobName"))
            return EmptyResult()

        self._patch(ActionAuthenticatorMixin, "_authenticate_and_authorize_normal_action", normal_hook(self.iam))
        self._patch(ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", s3_hook(self.iam))
        self._patch(SageMakerResponse, "stop_training_job", stop_training_job)
        for owner, name, replacement in fidelity.patches():
            self._patch(owner, name, replacement)

    def _function_log(self, function: str, version: str, line: str) -> None:
        assert self.logs is not None
        # moto does not keep a function's LoggingConfig, so its API reports the default group: logs go there
        group = f"/aws/lambda/{function}"
        key = (function, version)
        if key not in self._streams:
            self._streams[key] = f"{time.strftime('%Y/%m/%d')}/[{version}]{uuid.uuid4().hex}"
        self.logs.line(function, group, self._streams[key], line)
        try:  # CloudWatch Logs turns EMF lines into metrics in AWS
            emf.put(ACCOUNT, self.region, line)
        except Exception as exc:  # a bad line must not stop the function's log pump
            self.logs.recent["local-cloud"].append(f"EMF line of {function}:{version} not stored: {exc}")

    def _job_log(self, job: str, line: str) -> None:
        assert self.logs is not None
        self.logs.recent[job].append(line)
        if self.logs.echo:
            self.logs.echo(f"[{job}] {line}")

    # --- the API, as the local gateway calls it
    def api_invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        assert self.executor is not None
        if not self.api.function:
            raise LocalCloudError("the template's HTTP API has no Lambda integration")
        result = self.executor.invoke(self.api.function, self.api.qualifier, event)
        if result.error:
            raise FunctionError(result.payload.decode()[:500])
        answer: dict[str, Any] = json.loads(result.payload)
        return answer

    def authorizer(self) -> Any:
        from lambdaforge.local.auth import jwt_authorizer, sigv4_authorizer

        if self.api.authorization == "AWS_IAM":
            return sigv4_authorizer(ACCESS_KEY, SECRET_KEY, self.region)
        if self.api.authorization == "JWT":
            return jwt_authorizer(self.api.jwt_issuer, self.api.jwt_audience)
        return None

    def recent_logs(self) -> Iterator[tuple[str, list[str]]]:
        assert self.logs is not None
        for source, lines in self.logs.recent.items():
            yield source, list(lines)
