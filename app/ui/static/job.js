// /ui/jobs/{id}: status, spec, a table per epoch, and live curves fed by the event stream.
"use strict";

const jobId = decodeURIComponent(location.pathname.split("/").pop());
const COLORS = ["#1d4ed8", "#dc2626", "#15803d", "#9333ea", "#ea580c", "#0891b2"];
const TERMINAL = ["succeeded", "failed", "cancelled"];

function lineChart(canvas, yTitle) {
  return new Chart(canvas, {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false,
      parsing: false,
      scales: {
        x: { type: "linear", title: { display: true, text: "epoch" } },
        y: { title: { display: true, text: yTitle } },
      },
      plugins: { legend: { position: "bottom" } },
    },
  });
}

function dataset(chart, label, pointRadius) {
  let found = chart.data.datasets.find((d) => d.label === label);
  if (!found) {
    const color = COLORS[chart.data.datasets.length % COLORS.length];
    found = { label, data: [], borderColor: color, backgroundColor: color, pointRadius, borderWidth: 1.5 };
    chart.data.datasets.push(found);
  }
  return found;
}

const state = {
  lossChart: lineChart(document.getElementById("loss-chart"), "loss"),
  metricsChart: lineChart(document.getElementById("metrics-chart"), "score"),
  events: [],
  epochs: new Map(),
  bestEpoch: null,
};
window.tuneserve = state;

function renderJob(job) {
  document.getElementById("title").textContent = `Job ${job.id}`;
  const status = document.getElementById("status");
  status.textContent = job.error ? `${job.status} (${job.error.code}: ${job.error.message})` : job.status;
  status.className = `status ${job.status}`;
  const p = job.progress;
  const steps = p.total_steps ? ` · step ${p.step} / ${p.total_steps}` : "";
  document.getElementById("progress").textContent = `epoch ${p.epoch.toFixed(2)} / ${p.total_epochs}${steps}`;
  const model = document.getElementById("model");
  model.replaceChildren(job.model_id ? link(`/ui/models/${job.model_id}`, job.model_id) : "—");
  document.getElementById("spec").textContent = JSON.stringify(job.spec, null, 2);
  const best = job.best_epoch === null ? "—" : `${job.best_epoch}${job.stopped_early ? " (stopped early)" : ""}`;
  document.getElementById("best").textContent = best;
  const data = job.data;
  document.getElementById("data").textContent = data
    ? `${data.train_rows} train · ${data.validation_rows} validation` +
      (data.validation.source === "held_out" ? ` (held out: ${data.validation.ratio})` : "")
    : "—";
  if (job.best_epoch !== state.bestEpoch) {
    state.bestEpoch = job.best_epoch;
    markBestEpoch();
  }
  return job;
}

// The best epoch: a star on every eval curve, and its row highlighted.
function markBestEpoch() {
  const best = state.bestEpoch;
  for (const chart of [state.lossChart, state.metricsChart]) {
    chart.data.datasets = chart.data.datasets.filter((d) => d.label !== "best epoch");
    if (best === null || best === undefined) continue;
    const points = chart.data.datasets
      .filter((d) => d.label !== "train loss")
      .flatMap((d) => d.data.filter((p) => p.x === best));
    if (points.length) {
      chart.data.datasets.push({
        label: "best epoch", data: points, showLine: false, pointStyle: "star",
        pointRadius: 10, borderColor: "#111827", backgroundColor: "#facc15",
      });
    }
    chart.update("none");
  }
  renderEpochTable();
}

async function renderCheckpoints() {
  const body = document.querySelector("#checkpoints tbody");
  let list;
  try {
    list = await api(`/v1/jobs/${jobId}/checkpoints`);
  } catch (error) {
    showError(error.message);
    return;
  }
  body.replaceChildren();
  for (const c of list.data) {
    const tr = document.createElement("tr");
    if (c.is_best) tr.className = "best";
    cell(tr, `${c.epoch}${c.is_best ? " ★" : ""}`, "num");
    cell(tr, c.step, "num");
    cell(tr, c.eval_loss === null ? "—" : c.eval_loss.toFixed(4), "num");
    cell(tr, Object.entries(c.metrics).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" · "));
    cell(tr, `${(c.size_bytes / 1e6).toFixed(1)} MB`, "num");
    const td = document.createElement("td");
    if (c.model_id) {
      td.append(link(`/ui/models/${c.model_id}`, c.model_id));
    } else {
      const button = document.createElement("button");
      button.textContent = "register as a model";
      button.addEventListener("click", async () => {
        try {
          await api(`/v1/jobs/${jobId}/checkpoints/${c.epoch}/model`, { method: "POST" });
          await renderCheckpoints();
        } catch (error) {
          showError(error.message);
        }
      });
      td.append(button);
    }
    tr.append(td);
    body.append(tr);
  }
}

async function refreshJob() {
  try {
    return renderJob(await api(`/v1/jobs/${jobId}`));
  } catch (error) {
    showError(error.message);
    return null;
  }
}

function renderEpochTable() {
  const rows = [...state.epochs.values()].sort((a, b) => a.epoch - b.epoch);
  const names = [...new Set(rows.flatMap((r) => Object.keys(r.metrics)))].sort();
  const head = document.querySelector("#epochs thead");
  const headRow = document.createElement("tr");
  for (const title of ["epoch", "step", "train loss", "eval loss", ...names, "elapsed"]) {
    const th = document.createElement("th");
    th.textContent = title;
    headRow.append(th);
  }
  head.replaceChildren(headRow);
  const body = document.querySelector("#epochs tbody");
  body.replaceChildren();
  const fixed = (v) => (v === null || v === undefined ? "—" : v.toFixed(4));
  for (const r of rows) {
    const tr = document.createElement("tr");
    if (r.epoch === state.bestEpoch) tr.className = "best";
    cell(tr, r.epoch === state.bestEpoch ? `${r.epoch} ★` : r.epoch, "num");
    cell(tr, r.step, "num");
    cell(tr, fixed(r.train_loss), "num");
    cell(tr, fixed(r.eval_loss), "num");
    for (const name of names) cell(tr, fixed(r.metrics[name]), "num");
    cell(tr, `${Math.round(r.elapsed_seconds)} s`, "num");
    body.append(tr);
  }
}

function onEvent(event) {
  state.events.push(event);
  document.getElementById("event-count").textContent = state.events.length;
  const d = event.data;
  if (event.type === "train_loss") {
    dataset(state.lossChart, "train loss", 0).data.push({ x: d.epoch, y: d.loss });
    state.lossChart.update("none");
  } else if (event.type === "epoch_finished") {
    if (!state.epochs.has(d.epoch)) {
      state.epochs.set(d.epoch, d);
      if (d.eval_loss !== null) {
        dataset(state.lossChart, "eval loss", 4).data.push({ x: d.epoch, y: d.eval_loss });
      }
      for (const [name, value] of Object.entries(d.metrics)) {
        dataset(state.metricsChart, name, 4).data.push({ x: d.epoch, y: value });
      }
      state.lossChart.update("none");
      state.metricsChart.update("none");
      renderEpochTable();
    }
    refreshJob();
  } else {
    refreshJob();
  }
}

async function main() {
  document.getElementById("png").href = "#";
  document.getElementById("png").addEventListener("click", async (e) => {
    e.preventDefault();
    const response = await fetch(`/v1/jobs/${jobId}/metrics.png`, { headers: { Authorization: `Bearer ${apiKey()}` } });
    if (response.ok) window.open(URL.createObjectURL(await response.blob()));
  });
  const job = await refreshJob();
  if (!job) return;
  const poll = setInterval(refreshJob, 3000);
  document.getElementById("live").textContent = "● live";
  try {
    await followEvents(`/v1/jobs/${jobId}/events/stream`, onEvent);
  } catch (error) {
    showError(error.message);
  }
  clearInterval(poll);
  document.getElementById("live").textContent = "";
  await refreshJob();
  markBestEpoch();
  await renderCheckpoints();
  state.done = true;
}

main();
