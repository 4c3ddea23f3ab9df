"""`tuneserve jobs watch`: a progress bar per epoch from the job's event stream."""

import json
import math
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from app.client import render
from app.client.http import ApiClient
from app.client.stream import JobEvent, follow_events

REFETCH_SECONDS = 2.0  # how often to ask for total_steps while the server does not know it


class EpochBars:
    """One tqdm bar per epoch on `stream`; its total is the epoch's steps once known."""

    def __init__(self, stream: TextIO, total_epochs: int | None) -> None:
        self.stream = stream
        self.total_epochs = total_epochs
        self.steps_per_epoch: int | None = None
        self.epoch = 0
        self.finished = 0  # the last epoch whose bar was filled and closed
        self.epoch_start_step = 0
        self.bar: Any = None

    def set_plan(self, total_epochs: int | None, total_steps: int | None) -> None:
        """Steps per epoch from the job's totals; an open bar gets its total now."""
        self.total_epochs = total_epochs or self.total_epochs
        if total_steps and self.total_epochs:
            self.steps_per_epoch = math.ceil(total_steps / self.total_epochs)
            if self.bar is not None and self.bar.total is None:
                self.bar.total = self.steps_per_epoch
                self.bar.refresh()

    def advance(self, epoch: float, step: int, loss: float | None = None) -> None:
        """Move to `step`, reached at (fractional) `epoch`."""
        index = max(1, math.ceil(round(epoch, 4)))
        if index <= self.finished:
            return  # the loss logged at an epoch's last step, after its bar closed
        if index != self.epoch or self.bar is None:
            self._open(index)
        done = step - self._start_of(index)
        self.bar.n = max(0, min(done, self.bar.total or done))
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.refresh()

    def finish(self, epoch: int, step: int) -> None:
        """Fill and close the bar of a finished epoch."""
        if self.epoch != epoch or self.bar is None:
            self._open(epoch)
        if self.bar.total is None:
            self.bar.total = max(step - self._start_of(epoch), 0)
        self.bar.n = self.bar.total
        self.close()
        self.finished = epoch
        self.epoch_start_step = step

    def begin(self, epoch: int) -> None:
        """Open the bar of an epoch that starts now, so that its rate counts from here."""
        if self.total_epochs and epoch > self.total_epochs:
            return
        if self.bar is None or self.epoch != epoch:
            self._open(epoch)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _start_of(self, epoch: int) -> int:
        if self.steps_per_epoch:
            return (epoch - 1) * self.steps_per_epoch
        return self.epoch_start_step

    def _open(self, epoch: int) -> None:
        self.close()
        self.epoch = epoch
        of = f"/{self.total_epochs}" if self.total_epochs else ""
        self.bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}{of}",
            unit="step",
            file=self.stream,
            leave=True,
            dynamic_ncols=True,
        )


class Watcher:
    """Turns a job's events into bars (stderr), metrics lines and the outcome (stdout)."""

    def __init__(self, api: ApiClient, job_id: str, out: TextIO, err: TextIO) -> None:
        self.api = api
        self.job_id = job_id
        self.out = out
        self.err = err
        self.bars = EpochBars(err, None)
        self.last_fetch = 0.0

    def run(self) -> int:
        """Follow the job to its end; the exit code of `jobs watch`."""
        self._fetch_plan()
        try:
            for event in follow_events(self.api, self.job_id, on_reconnect=self._reconnecting):
                self.handle(event)
                if event.terminal:
                    return self._outcome(event)
        finally:
            self.bars.close()
        return 1  # follow_events ends only after a terminal event

    def handle(self, event: JobEvent) -> None:
        data = event.data
        if event.type == "started":
            self.note(f"started (attempt {data.get('attempt', '?')}, {data.get('worker', '?')})")
            self._fetch_plan()
            self.bars.begin(self.bars.finished + 1)
        elif event.type == "train_loss":
            if self.bars.steps_per_epoch is None:
                self._fetch_plan(throttle=True)
            epoch, step = float(data.get("epoch", 0)), int(data.get("step", 0))
            self.bars.advance(epoch, step, data.get("loss"))
        elif event.type == "epoch_finished":
            epoch, step = int(data.get("epoch", 0)), int(data.get("step", 0))
            self.bars.finish(epoch, step)
            line = render.metrics_line(
                epoch,
                step,
                data.get("train_loss"),
                data.get("eval_loss"),
                data.get("metrics") or {},
                data.get("elapsed_seconds"),
                self.bars.total_epochs,
            )
            tqdm.write(line, file=self.out)
            self.out.flush()
            self.bars.begin(epoch + 1)
        elif event.type == "retried":
            self.bars.close()  # it resumes from its last checkpoint, at an epoch's end
            self.note(f"retried: {data.get('reason', '?')}: {data.get('message', '')}".rstrip())
        elif event.type in ("queued", "cancel_requested"):
            self.note(event.type.replace("_", " "))

    def note(self, text: str) -> None:
        tqdm.write(f"job {self.job_id}: {text}", file=self.err)

    def _outcome(self, event: JobEvent) -> int:
        self.bars.close()
        data = event.data
        if event.type == "succeeded":
            print(f"job {self.job_id} succeeded: model {data.get('model_id')}", file=self.out)
            return 0
        if event.type == "failed":
            print(
                f"job {self.job_id} failed: {data.get('code')}: {data.get('message')}",
                file=self.out,
            )
            return 1
        print(f"job {self.job_id} cancelled", file=self.out)
        return 1

    def _fetch_plan(self, throttle: bool = False) -> None:
        now = time.monotonic()
        if throttle and now - self.last_fetch < REFETCH_SECONDS:
            return
        self.last_fetch = now
        progress = self.api.get_job(self.job_id).progress
        self.bars.set_plan(math.ceil(progress.total_epochs) or None, progress.total_steps)

    def _reconnecting(self, last_seq: int, reason: str) -> None:
        self.note(f"reconnecting after event {last_seq} ({reason})")


def watch_job(api: ApiClient, job_id: str, as_json: bool = False) -> int:
    """Follow the job to its end; 0 if it succeeded, 1 if it failed or was cancelled."""
    if as_json:
        for event in follow_events(api, job_id):
            print(json.dumps(event.raw), flush=True)
            if event.terminal:
                return 0 if event.type == "succeeded" else 1
        return 1
    return Watcher(api, job_id, out=sys.stdout, err=sys.stderr).run()
