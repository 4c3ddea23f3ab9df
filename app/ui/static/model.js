// /ui/models/{id}: what the model is, and a box to try predict.
"use strict";

const modelId = decodeURIComponent(location.pathname.split("/").pop());

async function main() {
  let model;
  try {
    model = await api(`/v1/models/${modelId}`);
  } catch (error) {
    showError(error.message);
    return;
  }
  document.getElementById("title").textContent = `Model ${model.id}`;
  document.getElementById("job").replaceChildren(link(`/ui/jobs/${model.job_id}`, model.job_id));
  document.getElementById("base").textContent = model.base_model;
  document.getElementById("labels").textContent = model.labels.join(", ");
  document.getElementById("metrics").textContent = Object.entries(model.metrics)
    .map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" · ");
  document.getElementById("epoch").textContent = model.epoch ?? "—";
  if (model.card) {
    document.getElementById("card").textContent =
      typeof model.card === "string" ? model.card : JSON.stringify(model.card, null, 2);
  }
  renderEvaluations(model.id);
  const pair = document.getElementById("text-pair");
  pair.hidden = !model.text_pair;
  pair.required = model.text_pair;
  document.getElementById("predict").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = document.getElementById("text").value;
    const input = model.text_pair ? { text, text_pair: pair.value } : text;
    const answer = document.getElementById("answer");
    try {
      const result = await api(`/v1/models/${model.id}/predict`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ inputs: [input] }),
      });
      const prediction = result.predictions[0];
      const scores = Object.entries(prediction.scores)
        .map(([label, p]) => `${label}: ${p.toFixed(3)}`).join("  ");
      answer.innerHTML = "";
      const strong = document.createElement("strong");
      strong.id = "predicted-label";
      strong.textContent = prediction.label;
      answer.append("label ", strong, `  (${scores})`);
      showError("");
    } catch (error) {
      showError(error.message);
    }
  });
}

async function renderEvaluations(id) {
  const body = document.querySelector("#evaluations tbody");
  let list;
  try {
    list = await api(`/v1/batch-predictions?model_id=${encodeURIComponent(id)}&limit=50`);
  } catch (error) {
    showError(error.message);
    return;
  }
  body.replaceChildren();
  for (const b of list.data) {
    const tr = document.createElement("tr");
    cell(tr, b.id);
    cell(tr, b.file_id);
    cell(tr, b.status);
    cell(tr, `${b.progress.rows} / ${b.progress.total_rows ?? "?"}`, "num");
    const metrics = b.result && b.result.metrics ? b.result.metrics : {};
    cell(tr, Object.entries(metrics).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" · ") || "—");
    cell(tr, b.output_file_id ?? "—");
    body.append(tr);
  }
}

main();
