"""Trainer callbacks: per-epoch metrics rows, job events and the last complete checkpoint in
the database (each a fenced write of the attempt), and stopping on request."""

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from app.jobs.states import EventType, StopReason
from app.models.files import link_model_files
from app.observability.worker import StepMeter
from app.storage import get_storage
from app.storage.keys import checkpoints_prefix
from app.tables import JobMetric
from worker.attempt import prune_stored_checkpoints, store_checkpoint, store_copy
from worker.lease import LeaseKeeper

logger = logging.getLogger(__name__)


def at_epoch_end(state: TrainerState) -> bool:
    """Whether the Trainer's state is at an epoch's last step (its epoch a whole number)."""
    epoch = float(state.epoch or 0.0)
    return abs(epoch - round(epoch)) < 1e-6


class JobProgressCallback(TrainerCallback):
    """Writes one metrics row per evaluated epoch and stops training when asked to."""

    def __init__(
        self,
        lease: LeaseKeeper,
        step_delay: float = 0.0,
        selection: "BestEpoch | None" = None,
        kept: "EpochWeights | None" = None,
    ) -> None:
        self.lease = lease
        self.job_id = lease.job_id
        self.step_delay = step_delay
        self.selection = selection or BestEpoch()
        self.kept = kept
        self.started = time.monotonic()
        self.final_metrics: dict[str, float] = {}
        # (loss, steps it covers) of each logged window since the last evaluation
        self.epoch_losses: list[tuple[float, int]] = []
        self.last_window_step = 0
        # train_loss events are written once per step per job: a resumed attempt replays
        # steps an earlier attempt already logged.
        self.last_event_step = 0
        self.step_meter = StepMeter()  # Prometheus step time and throughput

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self.lease.progress.total_steps = state.max_steps
        self.last_window_step = state.global_step  # a resumed run starts past zero
        self.last_event_step = self.lease.write(
            lambda repo: repo.last_event_step(self.job_id, EventType.train_loss)
        )
        # A resumed attempt knows the epochs evaluated before it (best so far, patience).
        rows = self.lease.write(lambda repo: repo.list_metrics(self.job_id))
        for row in rows:
            self.selection.add(row.epoch, row.metrics, row.eval_loss)
        self._record_progress(state)
        self.step_meter.start(args.train_batch_size * args.gradient_accumulation_steps)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self.step_meter.step_begin()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        self.step_meter.step_end()
        self._record_progress(state)
        if self.step_delay:
            time.sleep(self.step_delay)
        if self.lease.stop_reason is StopReason.shutdown and at_epoch_end(state):
            return control  # an epoch's last step: it is evaluated and saved first (epoch end)
        if self._maybe_stop(control) and self.lease.stop_reason is StopReason.shutdown:
            control.should_save = True  # a checkpoint at this step, to resume elsewhere
        return control

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        control.should_log = True  # close the loss window exactly at the epoch boundary
        if self.lease.stop_reason is StopReason.shutdown:
            # The epoch is whole: its evaluation, metrics row and checkpoint come first.
            control.should_training_stop = True
        else:
            self._maybe_stop(control)
        return control

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        # Evaluation has no stop flag of its own: a cancel (or a lost lease) ends it here.
        if self.lease.stop_reason in (StopReason.cancelled, StopReason.lease_lost):
            self.lease.check()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or not math.isfinite(loss) or state.global_step <= self.last_window_step:
            return
        self.epoch_losses.append((float(loss), state.global_step - self.last_window_step))
        self.last_window_step = state.global_step
        if state.global_step <= self.last_event_step:
            return
        self.last_event_step = state.global_step
        data = {
            "step": state.global_step,
            "epoch": round(float(state.epoch or 0.0), 4),
            "loss": float(loss),
            "learning_rate": (logs or {}).get("learning_rate"),
        }
        self.lease.write(
            lambda repo: repo.append_event(self.lease.fence, EventType.train_loss, data)
        )

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """The checkpoint of this step is complete on disk: store it, point the job at it,
        then drop the older ones (the Trainer's own rotation would delete the previous one
        before the job points past it)."""
        output = Path(str(args.output_dir))
        folder = output / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        data = {"step": state.global_step, "epoch": round(float(state.epoch or 0.0), 4)}
        if self.kept is not None and at_epoch_end(state):
            self.kept.keep(round(float(state.epoch or 0.0)), state.global_step, folder)
        storage = get_storage(self.lease.settings)
        started = time.monotonic()
        key = store_checkpoint(storage, self.lease.fence, folder, state.global_step)
        logger.info("job %s stored %s in %.1f s", self.job_id, key, time.monotonic() - started)
        self.lease.write(lambda repo: repo.record_checkpoint(self.lease.fence, key, data))
        prune_stored_checkpoints(storage, self.lease.fence, key)
        for old in output.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> TrainerControl:
        metrics = metrics or {}
        epoch = int(round(state.epoch or 0))
        if epoch >= args.num_train_epochs:
            # Its weights are saved next, as the model and kept epoch; a checkpoint of the last
            # epoch (weights plus optimizer state) would only be written to be deleted.
            control.should_save = False
        # The epoch's mean training loss, from the windows logged during it.
        steps = sum(count for _, count in self.epoch_losses)
        train_loss = (
            sum(loss * count for loss, count in self.epoch_losses) / steps if steps else None
        )
        self.epoch_losses = []
        scores = {
            key.removeprefix("eval_"): float(value)
            for key, value in metrics.items()
            if key.startswith("eval_")
            and key not in ("eval_loss", "eval_runtime", "eval_samples_per_second")
            and key != "eval_steps_per_second"
            and isinstance(value, int | float)
            and math.isfinite(value)
        }
        eval_loss = metrics.get("eval_loss")
        row = JobMetric(
            job_id=self.job_id,
            epoch=epoch,
            step=state.global_step,
            train_loss=float(train_loss) if train_loss is not None else None,
            eval_loss=float(eval_loss) if eval_loss is not None else None,
            metrics=scores,
            elapsed_seconds=round(time.monotonic() - self.started, 3),
        )
        self.lease.write(lambda repo: repo.add_metric_once(self.lease.fence, row))
        self.final_metrics = dict(scores, **({"eval_loss": row.eval_loss} if eval_loss else {}))
        self.selection.add(epoch, scores, row.eval_loss)
        logger.info("job %s epoch %s: %s", self.job_id, epoch, scores)
        if self.selection.should_stop() and epoch < args.num_train_epochs:
            logger.info("job %s stops early after epoch %s", self.job_id, epoch)
            self.selection.stopped_early = True
            control.should_training_stop = True
        self._maybe_stop(control)
        return control

    def _record_progress(self, state: TrainerState) -> None:
        self.lease.progress.epoch = round(float(state.epoch or 0.0), 4)
        self.lease.progress.step = state.global_step

    def _maybe_stop(self, control: TrainerControl) -> bool:
        if self.lease.stop_reason is None:
            return False
        # Stop now, with no evaluation or metrics row for a partial epoch.
        control.should_training_stop = True
        control.should_evaluate = False
        control.should_save = self.lease.stop_reason is StopReason.shutdown and bool(
            control.should_save
        )
        control.should_log = False
        return True


class BestEpoch:
    """Which evaluated epoch is best by one metric (ties keep the earlier epoch), and whether
    early stopping should end training: `patience` evaluations without an improvement of more
    than `threshold` over the best so far."""

    def __init__(
        self,
        metric: str = "eval_loss",
        greater_is_better: bool = False,
        patience: int | None = None,
        threshold: float = 0.0,
    ) -> None:
        self.metric = metric
        self.greater = greater_is_better
        self.patience = patience
        self.threshold = threshold
        self.values: dict[int, float] = {}
        self.metrics: dict[int, dict[str, float]] = {}
        self.stopped_early = False

    def add(self, epoch: int, scores: dict[str, float], eval_loss: float | None) -> None:
        every = dict(scores, **({"eval_loss": eval_loss} if eval_loss is not None else {}))
        self.metrics[epoch] = every
        value = every.get(self.metric)
        if value is not None and math.isfinite(value):
            self.values[epoch] = float(value)

    def _better(self, value: float, than: float, margin: float) -> bool:
        return value - than > margin if self.greater else than - value > margin

    @property
    def best(self) -> int | None:
        best: int | None = None
        for epoch in sorted(self.values):
            if best is None or self._better(self.values[epoch], self.values[best], 0.0):
                best = epoch
        return best

    def should_stop(self) -> bool:
        if self.patience is None:
            return False
        reference: float | None = None
        stale = 0
        for epoch in sorted(self.values):
            value = self.values[epoch]
            if reference is None or self._better(value, reference, self.threshold):
                reference, stale = value, 0
            else:
                stale += 1
        return stale >= self.patience


class EpochWeights:
    """Keeps each epoch's weights (no optimizer state) for the user: stored as a tree of its
    own (`checkpoints/<job>/epoch-<n>-a<attempt>/`: a name no other attempt writes) and
    recorded on the job (fenced), with a local copy under `jobs/<job>/epochs/` for the
    attempt's own choice of the model at the end."""

    def __init__(self, lease: LeaseKeeper, jobs_dir: Path) -> None:
        self.lease = lease
        self.folder = jobs_dir / lease.job_id / "epochs"
        self.storage = get_storage(lease.settings)

    def keep(self, epoch: int, step: int, source: Path) -> Path:
        name = f"epoch-{epoch}-a{self.lease.fence.attempt}"
        target = self.folder / name
        shutil.rmtree(target, ignore_errors=True)
        size = link_model_files(source, target)
        key = f"{checkpoints_prefix(self.lease.job_id)}{name}"
        store_copy(self.storage, f"{key}/", target)
        self.lease.write(
            lambda repo: repo.record_epoch_weights(self.lease.fence, epoch, step, key, size)
        )
        return target

    def local(self, path: str) -> Path | None:
        """This attempt's own copy of the kept epoch stored at `path`, if it has one."""
        folder = self.folder / path.rsplit("/", 1)[-1]
        return folder if folder.is_dir() else None
