"""The fine-tune itself: the Hugging Face course recipe driven by a job spec."""

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.training_args import ParallelMode
from transformers.utils import logging as hf_logging

from app.core.config import Settings
from app.core.precision import use_bf16
from app.core.redact import public_message
from app.jobs.schemas import Hyperparameters, JobSpec
from app.models.files import link_model_files
from app.models.locator import InvalidModelName, locate_base_model
from app.storage import get_storage
from app.storage.keys import model_prefix
from worker.attempt import Attempt
from worker.callbacks import BestEpoch, EpochWeights, JobProgressCallback
from worker.data import LabeledSplits, hub_work_dir, load_splits
from worker.errors import JobFailure
from worker.hub import HubUnavailable, fetch_base_model
from worker.lease import LeaseKeeper

logger = logging.getLogger(__name__)
MAX_DEFAULT_LENGTH = 512
datasets.disable_progress_bars()
hf_logging.disable_progress_bar()


@dataclass
class TrainingResult:
    model_dir: Path  # a complete model folder, written aside, not yet in place
    labels: list[str]
    metrics: dict[str, float]  # the best epoch's
    best_epoch: int | None = None
    stopped_early: bool = False
    task: str = "single_label_classification"
    threshold: float | None = None  # multi-label


@dataclass(frozen=True)
class World:
    """Which of a job's training processes this is (worker/distributed.py). Rank 0 alone
    writes (rows, events, checkpoints, the model); the others only train beside it, and
    `callbacks` keep their Trainers in step with rank 0's decisions."""

    rank: int = 0
    size: int = 1
    callbacks: tuple[TrainerCallback, ...] = field(default=())

    @property
    def writes(self) -> bool:
        return self.rank == 0


def load_base(
    settings: Settings,
    name: str,
    labels: list[str] | dict[str, Any],
    job_dir: Path | None = None,
) -> tuple[Any, Any]:
    """Tokenizer and a classification model with our label names; safetensors only.

    A Hub model is fetched first (config, tokenizer and safetensors files only, size-checked)
    into a folder under `job_dir`, removed once the model is in memory.
    """
    try:
        ref = locate_base_model(settings, name)
    except InvalidModelName as exc:
        raise JobFailure("invalid_base_model", str(exc)) from exc
    if ref.kind == "trained":  # a model of ours: through the storage, as predict reads it
        try:
            with get_storage(settings).local_dir(model_prefix(name)) as folder:
                return _load_base_from(str(folder), name, labels)
        except FileNotFoundError:
            raise JobFailure(
                "base_model_unavailable", f"The model '{name}' no longer exists."
            ) from None
    if ref.kind != "hub":
        return _load_base_from(ref.location, name, labels)
    with hub_work_dir(settings, job_dir, "hub-model") as work:
        try:
            folder = fetch_base_model(settings, name, work / "repo")
        except HubUnavailable as exc:
            raise JobFailure("base_model_unavailable", str(exc)) from exc
        return _load_base_from(str(folder), name, labels)


def _load_base_from(
    location: str, name: str, labels: list[str] | dict[str, Any]
) -> tuple[Any, Any]:
    """`labels`: the label names, or the head's keyword arguments (Task.head())."""
    if isinstance(labels, dict):
        head = labels
    else:
        id2label = dict(enumerate(labels))
        head = {
            "num_labels": len(labels),
            "id2label": id2label,
            "label2id": {label: i for i, label in id2label.items()},
        }
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            location, trust_remote_code=False, local_files_only=True
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            location,
            trust_remote_code=False,
            local_files_only=True,
            **head,
            use_safetensors=True,
            ignore_mismatched_sizes=True,  # a new head when the label count differs
        )
    except (OSError, ValueError) as exc:
        raise JobFailure(
            "base_model_unavailable",
            f"Cannot load base model '{name}': {public_message(exc, 300, with_type=False)}",
        ) from exc
    return tokenizer, model


def tokenize(
    frame: pd.DataFrame,
    spec: JobSpec,
    targets: list[Any],
    tokenizer: Any,
    max_length: int,
    check: Callable[[], None] = lambda: None,
) -> datasets.Dataset:
    """Tokenized rows with their targets (label ids, scores or multi-hot rows: Task.targets)."""
    columns: dict[str, list[Any]] = {
        "text": frame[spec.text_column].astype(str).tolist(),
        "labels": targets,
    }
    if spec.text_pair_column:
        columns["text_pair"] = frame[spec.text_pair_column].astype(str).tolist()
    dataset = datasets.Dataset.from_dict(columns)

    def encode(batch: dict[str, list[Any]]) -> Any:
        check()  # a cancel stops a long tokenization between batches
        return tokenizer(
            batch["text"], batch.get("text_pair"), truncation=True, max_length=max_length
        )

    removed = ["text", "text_pair"] if spec.text_pair_column else ["text"]
    return dataset.map(encode, batched=True, remove_columns=removed)


def training_arguments(
    settings: Settings, checkpoints: Path, hp: Hyperparameters, processes: int = 1
) -> Any:
    """The Trainer's arguments for a job: the course recipe plus the job's speed choices.
    With several processes the job's batch is split between them (the same optimisation)."""
    bf16 = use_bf16(hp.precision)
    if hp.per_device_train_batch_size % processes:
        raise JobFailure(
            "invalid_batch_size",
            f"per_device_train_batch_size {hp.per_device_train_batch_size} does not split "
            f"evenly between {processes} processes.",
        )
    distributed: dict[str, Any] = {}
    if processes > 1:
        distributed["ddp_backend"] = "nccl" if torch.cuda.is_available() else "gloo"
        # Left on, the Trainer multiplies each rank's loss by the process count, expecting a
        # loss normalised by the whole batch's item count; a classification head's loss is
        # the mean over its own rank's batch, so gradients and logged losses would be N times
        # too large. With equal batches per rank, DDP's mean gradient is the whole batch's.
        distributed["average_tokens_across_devices"] = False
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=hp.num_train_epochs,
        learning_rate=hp.learning_rate,
        per_device_train_batch_size=hp.per_device_train_batch_size // processes,
        per_device_eval_batch_size=hp.per_device_eval_batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        weight_decay=hp.weight_decay,
        warmup_steps=hp.warmup_ratio,  # a value below 1 is a ratio of the total steps
        lr_scheduler_type=hp.lr_scheduler_type,
        seed=hp.seed,
        eval_strategy="epoch",
        save_strategy="epoch",
        # No rotation by the Trainer: it would delete the previous checkpoint before the job
        # points at the new one (JobProgressCallback.on_save rotates after pointing).
        save_total_limit=None,
        logging_strategy="steps",
        logging_steps=settings.loss_event_every_steps,  # and at each epoch's end (callback)
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if hp.group_by_length else "random",
        bf16=bf16,
        # bf16 autocast on the CPU; with several processes, Accelerate's gloo DDP
        use_cpu=(bf16 or processes > 1) and not torch.cuda.is_available(),
        **distributed,
    )


def run_training(
    settings: Settings, attempt: Attempt, lease: LeaseKeeper, world: World | None = None
) -> TrainingResult:
    """Train, evaluating each epoch; resumes from the job's last complete checkpoint when
    there is one. The model is the best epoch's weights by the job's chosen metric. A cancel
    is honoured between every stage and inside each. In a job of several processes (`world`)
    only rank 0 writes anything, and only its result means something."""
    world = world or World()
    spec, job_id = attempt.spec, attempt.job_id
    # Each rank has a scratch folder of its own (Hub downloads) inside the attempt's.
    work = attempt.folder if world.rank == 0 else attempt.folder / f"rank-{world.rank}"
    splits: LabeledSplits = load_splits(settings, attempt.tenant_id, spec, work)
    task = splits.task
    summary = splits.summary(spec.label_column)
    if world.writes:
        lease.write(lambda repo: repo.record_summary(attempt.fence, summary))
    lease.check()
    hp = spec.hyperparameters
    set_seed(hp.seed)  # the new classification head is initialised reproducibly
    tokenizer, model = load_base(settings, spec.base_model, task.head(), work)
    lease.check()
    max_length = hp.max_length or min(tokenizer.model_max_length, MAX_DEFAULT_LENGTH)
    train_targets = task.targets(splits.train[spec.label_column], "train")
    validation_targets = task.targets(splits.validation[spec.label_column], "validation")
    train = tokenize(splits.train, spec, train_targets, tokenizer, max_length, lease.check)
    validation = tokenize(
        splits.validation, spec, validation_targets, tokenizer, max_length, lease.check
    )

    args = training_arguments(settings, attempt.checkpoints, spec.hyperparameters, world.size)
    if world.size > 1 and (
        args.parallel_mode != ParallelMode.DISTRIBUTED or args.world_size != world.size
    ):
        # Ranks that each trained alone would look like a success.
        raise RuntimeError(f"the Trainer does not run DDP on {world.size} processes")
    metric, greater = spec.best_metric(task.kind)
    if metric != "eval_loss" and metric not in spec.metric_names(task.kind):
        raise JobFailure(
            "invalid_spec",
            f"metric_for_best_model '{metric}' is not one of this {task.kind} job's metrics "
            f"({', '.join(spec.metric_names(task.kind))}); name one of them or eval_loss.",
        )
    selection = BestEpoch(metric, greater, hp.early_stopping_patience, hp.early_stopping_threshold)
    kept = EpochWeights(lease, settings.jobs_dir)
    progress = JobProgressCallback(
        lease, settings.fault_injection_step_delay_seconds, selection, kept
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=task.compute_metrics(spec.metric_names(task.kind)),
        compute_loss_func=(
            task.balanced_loss(train_targets) if hp.class_weights == "balanced" else None
        ),
        callbacks=[progress, *world.callbacks] if world.writes else list(world.callbacks),
    )
    logger.info(
        "job %s trains %d examples with %d torch threads, %s (precision %r), %s batches",
        job_id,
        len(train),
        torch.get_num_threads(),
        "bf16 autocast" if args.bf16 else "fp32",
        hp.precision,
        args.train_sampling_strategy,
    )
    if attempt.resume_from is not None:
        logger.info("job %s resumes from %s", job_id, attempt.resume_from)
    lease.check()
    trainer.train(resume_from_checkpoint=str(attempt.resume_from) if attempt.resume_from else None)
    lease.check()
    if not world.writes:  # rank 0 keeps the epochs' weights and saves the model
        return TrainingResult(model_dir=attempt.staging, labels=splits.labels, metrics={})

    # The last evaluated epoch's weights are in memory; keep them unless a checkpoint did.
    kept_epochs = {row.epoch: row.path for row in lease.write(lambda r: r.list_checkpoints(job_id))}
    last = max(selection.metrics, default=None)
    if last is not None and last not in kept_epochs:
        shutil.rmtree(attempt.staging, ignore_errors=True)
        trainer.save_model(str(attempt.staging))  # safetensors weights, config, tokenizer
        kept.keep(last, trainer.state.global_step, attempt.staging)
        kept_epochs = {
            row.epoch: row.path for row in lease.write(lambda r: r.list_checkpoints(job_id))
        }
    best = selection.best if selection.best is not None else last
    lease.check()
    shutil.rmtree(attempt.staging, ignore_errors=True)
    if best is None:
        trainer.save_model(str(attempt.staging))
    elif (local := kept.local(kept_epochs[best])) is not None:
        link_model_files(local, attempt.staging)  # every evaluated epoch's weights are kept
    else:  # kept by an earlier attempt, maybe on another machine
        with get_storage(settings).local_dir(f"{kept_epochs[best]}/") as stored:
            link_model_files(stored, attempt.staging)
    lease.check()
    logger.info("job %s: best epoch %s by %s", job_id, best, metric)
    return TrainingResult(
        model_dir=attempt.staging,
        labels=splits.labels,
        metrics=selection.metrics.get(best, progress.final_metrics) if best is not None else {},
        best_epoch=best,
        stopped_early=selection.stopped_early,
        task=task.kind,
        threshold=spec.threshold if task.kind == "multi_label_classification" else None,
    )
