"""Promotion: a new Lambda version pinned to the model, then alias `live` moves (canary, then all).

Versions are immutable: each published version carries MODEL_URI in its configuration, so
moving the alias is the whole of a rollout, and moving it back is the whole of a rollback.
The registry records live, previous and the promotion history.

How a rollout decides: before any traffic moves, the new version answers its model's own sample
request (`smoke`); a wrong answer stops the rollout with the alias untouched. The canary step then
puts the version's own alarms (`canary_watch`), records when the canary began, and gives the version
its weight. Finalize reads the whole window, not one moment: every watched alarm's history since
the canary began, the alarms' state now, and the version's 5xx count; anything wrong aborts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lambdaforge import envvars
from lambdaforge.pipeline import smoke
from lambdaforge.pipeline.canary_watch import CanaryWatch, VersionMetrics, parse_time
from lambdaforge.pipeline.errors import (
    CanaryFailedError,
    CanaryNotSettledError,
    PromotionError,
    SmokeCheckFailedError,
)
from lambdaforge.pipeline.payloads import PromoteRequest
from lambdaforge.pipeline.settings import PipelineSettings
from lambdaforge.registry import Catalog, CatalogState, ConcurrentUpdateError, UnpublishedVersionError, VersionRecord
from lambdaforge.registry.store import now


@dataclass(frozen=True)
class AliasState:
    version: str
    weights: dict[str, float]
    revision: str = ""  # RevisionId: a move based on this read fails if someone moved the alias since


class Promoter:
    def __init__(self, settings: PipelineSettings, *, lambda_client: Any = None, cloudwatch: Any = None,
                 catalog: Catalog | None = None, s3: Any = None) -> None:
        from lambdaforge.aws import client

        settings.need("inference_function", "registry_table")
        self.settings = settings
        self.fn = settings.inference_function
        self.alias = settings.inference_alias
        self.lam = lambda_client or client("lambda")
        self.cloudwatch = cloudwatch or client("cloudwatch")  # every canary has its version's own alarms
        self.catalog = catalog or Catalog(settings.registry_table)
        self.watch = CanaryWatch(self.cloudwatch, self.fn, settings.canary_alarms)
        self._s3 = s3

    @property
    def s3(self) -> Any:
        """Only the smoke check reads S3 (the model's sample): the client is made when it is needed."""
        if self._s3 is None:
            from lambdaforge.aws import client

            self._s3 = client("s3")
        return self._s3

    def handle(self, request: PromoteRequest) -> dict[str, Any]:
        """Do what the workflow asks (`request.action`); the answer names the action and the model."""
        holder = self._lock_holder(request)
        if holder is not None and request.action == "abort":  # not its rollout to undo: only its own weight
            result = self.restore(request.recipe, request.execution)
        elif holder is not None:
            raise PromotionError(f"{request.execution} no longer holds the {request.recipe} run lock "
                                 f"({holder or 'nobody'} does: its lock was judged dead, and a newer run may "
                                 "have trained since): this run promotes nothing")
        elif request.action == "rollback":
            result = self.rollback(request.recipe)
        elif request.action == "restore":
            result = self.restore(request.recipe, request.execution)
        elif request.version is None:
            raise PromotionError(f"action {request.action!r} needs a version")
        elif request.action == "canary":
            result = self.canary(request.recipe, request.version, execution=request.execution)
        elif request.action == "finalize":
            result = self.finalize(request.recipe, request.version, execution=request.execution)
        else:
            result = self.abort(request.recipe, request.version)
        return {"action": request.action, "recipe": request.recipe, "version": request.version, **result}

    def _lock_holder(self, request: PromoteRequest) -> str | None:
        """Who holds the recipe's run lock when a run other than the holder asks to move the alias ("" for
        nobody); None when the request may go ahead: the holder's own, or no run's (the CLI, a rollback,
        the recovery's restore). A run whose lock was released must not promote: a newer run may have
        trained and gone live meanwhile, and this older model would replace it."""
        from lambdaforge.registry import Runs

        if not request.execution or request.action not in ("canary", "finalize", "abort"):
            return None
        holder = Runs(self.settings.registry_table, table=self.catalog.table).state(request.recipe).running
        return None if holder == request.execution else (holder or "")

    def alias_state(self) -> AliasState:
        from botocore.exceptions import ClientError

        try:
            alias = self.lam.get_alias(FunctionName=self.fn, Name=self.alias)
        except ClientError as exc:
            raise PromotionError(f"function {self.fn} has no alias {self.alias!r}: "
                                 f"{exc.response['Error']['Message']}") from exc
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return AliasState(version=alias["FunctionVersion"], weights=dict(weights),
                          revision=str(alias.get("RevisionId") or ""))

    def _move_then_record(self, current: AliasState, version: str,
                          record: Callable[[], CatalogState]) -> CatalogState:
        """Move the alias, then the registry's pointers; if the registry refuses (live moved since it was
        read), put the alias back as it was, so that alias and registry never disagree."""
        moved = self._set_alias(current, version)
        try:
            return record()
        except ConcurrentUpdateError:
            self._set_alias(moved, current.version, current.weights)
            raise

    def _set_alias(self, read: AliasState, version: str, weights: dict[str, float] | None = None) -> AliasState:
        """Move the alias, unless it moved since `read` (two promoters cannot both win); the new state."""
        from botocore.exceptions import ClientError

        guard = {"RevisionId": read.revision} if read.revision else {}
        try:
            out = self.lam.update_alias(FunctionName=self.fn, Name=self.alias, FunctionVersion=version,
                                        RoutingConfig={"AdditionalVersionWeights": weights or {}}, **guard)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "PreconditionFailedException":
                raise
            raise PromotionError(f"alias {self.alias!r} of {self.fn} moved since it was read (it was on version "
                                 f"{read.version}); another promotion or rollback won. Nothing was changed: "
                                 "check `lambdaforge status` and retry.") from exc
        return AliasState(version=version, weights=dict(weights or {}), revision=str(out.get("RevisionId") or ""))

    def _configure(self, variables: dict[str, str]) -> None:
        self.lam.update_function_configuration(FunctionName=self.fn, Environment={"Variables": variables})
        self.lam.get_waiter("function_updated_v2").wait(FunctionName=self.fn,
                                                        WaiterConfig={"Delay": 2, "MaxAttempts": 90})

    def publish(self, recipe: str, version: int) -> str:
        """The Lambda version pinned to this model (published once; a retry reuses it)."""
        record = self.catalog.version(recipe, version)
        if record.lambda_version:
            return record.lambda_version
        config = self.lam.get_function_configuration(FunctionName=self.fn)
        # unpinned is derived, not snapshotted: a publish that died half way left $LATEST pinned, and a
        # snapshot would make that pin permanent
        current = dict((config.get("Environment") or {}).get("Variables") or {})
        unpinned = {k: v for k, v in current.items() if k != envvars.MODEL_VERSION} | {envvars.MODEL_URI: ""}
        pinned = {**unpinned, envvars.MODEL_URI: record.model_uri, envvars.MODEL_VERSION: model_name(recipe, version)}
        self._configure(pinned)
        try:
            published = self.lam.publish_version(FunctionName=self.fn,
                                                 Description=f"lambdaforge {recipe} model v{version}"[:256])
        finally:
            # $LATEST must not stay pinned: a later code deploy publishes $LATEST, and would bring this
            # model back on alias live even after a rollback or an aborted canary.
            self._configure(unpinned)
        lambda_version = str(published["Version"])
        self.catalog.set_lambda_version(recipe, version, lambda_version)
        return lambda_version

    def version_configuration(self, lambda_version: str) -> dict[str, Any]:
        config: dict[str, Any] = self.lam.get_function_configuration(FunctionName=self.fn, Qualifier=lambda_version)
        return config

    def smoke_check(self, record: VersionRecord, lambda_version: str, config: dict[str, Any]) -> dict[str, Any]:
        """The published version answers its model's own sample right, or nothing moves."""
        pinned = ((config.get("Environment") or {}).get("Variables") or {}).get(envvars.MODEL_URI, "")
        if pinned != record.model_uri:
            raise SmokeCheckFailedError(f"version {lambda_version} of {self.fn} pins MODEL_URI {pinned!r}, not "
                                        f"{record.model_uri!r} of {record.recipe} v{record.version}; nothing moved")
        try:
            return smoke.check(self.lam, self.s3, str(config["FunctionArn"]), record.model_uri,
                               model_name(record.recipe, record.version))
        except SmokeCheckFailedError as exc:
            raise SmokeCheckFailedError(f"{record.recipe} v{record.version} (version {lambda_version} of "
                                        f"{self.fn}) failed its smoke check, so no traffic moved to it: {exc}") from exc

    def canary(self, recipe: str, version: int, *, execution: str = "") -> dict[str, Any]:
        """Smoke-check the version, then give it its canary weight. The canary is this attempt's (`execution`):
        the same run's retried step keeps its start and alarms; another run (PublishVersion answers an
        unchanged configuration with the version it published before) gets a new window and new alarms,
        never the earlier attempt's start or alarm state."""
        new = self.publish(recipe, version)
        read = self.catalog.state(recipe)
        current = self.alias_state()
        if current.version == new:
            return {"lambda_version": new, "previous": current.version, "weight": 1.0, "note": "already live"}
        config = self.version_configuration(new)
        record = self.catalog.version(recipe, version)
        checked = self.smoke_check(record, new, config)
        if read.live is None or self.settings.canary_weight <= 0:
            # nothing is being served yet (or canaries are off): there is no traffic to protect
            self._move_then_record(current, new, lambda: self.catalog.mark_live(recipe, version, read=read))
            return {"lambda_version": new, "previous": current.version, "weight": 1.0, "note": "first model",
                    "smoke": checked}
        retried = record.canary_started_at is not None and record.canary_execution == execution
        # alarms first, the start second: a step that dies between them makes both anew when retried
        alarms = self.watch.arm(new, VersionMetrics.of(config, new), fresh=not retried)
        started = self.catalog.set_canary_started(recipe, version, now(), execution)  # before any request
        self._set_alias(current, current.version, {new: self.settings.canary_weight})
        return {"lambda_version": new, "previous": current.version, "weight": self.settings.canary_weight,
                "smoke": checked, "alarms": alarms, "canary_started_at": started}

    def alarms_firing(self) -> list[str]:
        """The template's alarms in ALARM now."""
        return self.watch.firing(list(self.settings.canary_alarms))

    def canary_faults(self, record: VersionRecord, execution: str = "") -> list[str]:
        """Why the version's canary must not be finalized ([] if nothing went wrong during it). A version
        that went live without a canary (the first model), or whose recorded canary is another run's, has
        no window in this run: the alarms' state now is read. A window is read only once settled (the
        canary's length plus the metrics' settle time after it began): sooner, CanaryNotSettledError."""
        ours = not execution or record.canary_execution in (None, execution)  # None: recorded before runs were
        if not record.lambda_version or not record.canary_started_at or not ours:
            return [f"alarm {n} fired during the canary" for n in self.alarms_firing()]
        metrics = VersionMetrics.of(self.version_configuration(record.lambda_version), record.lambda_version)
        since = parse_time(record.canary_started_at)
        settled = (since + timedelta(seconds=self.settings.canary_seconds + self.settings.metrics_settle_seconds)
                   if self.settings.canary_weight > 0 else None)
        return self.watch.verdict(record.lambda_version, metrics, since, settled_at=settled)

    def _disarm(self, lambda_version: str | None) -> bool:
        """Delete the version's canary alarms once decided; a failure here must not undo the decision."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not lambda_version:
            return False
        try:
            self.watch.disarm(lambda_version)
        except (ClientError, BotoCoreError):
            return False
        return True

    def finalize(self, recipe: str, version: int, *, execution: str = "") -> dict[str, Any]:
        record = self.catalog.version(recipe, version)
        if not record.lambda_version:
            raise PromotionError(f"{recipe} v{version} has no published Lambda version; run the canary step first")
        try:
            faults = self.canary_faults(record, execution)
        except CanaryNotSettledError:  # undecided is not passed: traffic goes back, as the workflow's Catch does
            self.abort(recipe, version)
            raise
        if faults:
            self.abort(recipe, version)
            raise CanaryFailedError(f"{recipe} v{version}: {'; '.join(faults)}; traffic is back on the previous "
                                    "version")
        read = self.catalog.state(recipe)
        current = self.alias_state()
        if record.lambda_version != current.version and record.lambda_version not in current.weights:
            raise PromotionError(f"{recipe} v{version}: alias {self.alias!r} no longer carries its canary (it is on "
                                 f"version {current.version}, weights {current.weights}); something else moved "
                                 "it, so this rollout stops here")
        state = self._move_then_record(current, record.lambda_version,
                                       lambda: self.catalog.mark_live(recipe, version, read=read))
        self._disarm(record.lambda_version)
        return {"lambda_version": record.lambda_version, "live": state.live, "previous": state.previous}

    def abort(self, recipe: str, version: int) -> dict[str, Any]:
        """Undo a canary: all traffic to the version the registry says is live."""
        record = self.catalog.version(recipe, version)
        current = self.alias_state()
        live = self.catalog.live_model(recipe)
        target = live.lambda_version if live and live.lambda_version else current.version
        if target == record.lambda_version and live and live.version != version:
            target = current.version
        if current.weights or current.version != target:
            self._set_alias(current, target)
        if record.lambda_version != target:
            self._disarm(record.lambda_version)
        return {"lambda_version": target, "aborted": record.lambda_version}

    def restore(self, recipe: str, execution: str) -> dict[str, Any]:
        """Take the canary weight of the version `execution` made off the alias, and nothing else: the
        main version, a code deploy's shift and other runs' canaries stay as they are."""
        if not execution:
            raise PromotionError("action 'restore' needs the execution whose canary to undo")
        mine = {v.lambda_version for v in self.catalog.versions(recipe) if v.execution == execution}
        current = self.alias_state()
        weights = {k: w for k, w in current.weights.items() if k not in mine}
        if weights == current.weights:
            return {"lambda_version": current.version, "restored": False}
        self._set_alias(current, current.version, weights)
        return {"lambda_version": current.version, "restored": True}

    def rollback(self, recipe: str) -> dict[str, Any]:
        state, target = self.catalog.rollback_target(recipe)
        if not target.lambda_version:
            raise UnpublishedVersionError(f"{recipe} v{target.version} was never published as a Lambda version")
        new_state = self._move_then_record(self.alias_state(), target.lambda_version,
                                           lambda: self.catalog.mark_rolled_back(recipe, target.version, read=state))
        return {"from_version": state.live, "to_version": target.version, "lambda_version": target.lambda_version,
                "live": new_state.live, "previous": new_state.previous}


def model_name(recipe: str, version: int) -> str:
    """The name a version pinned to this model serves under (MODEL_VERSION; `model.version` in answers)."""
    return f"{recipe}-v{version}"
