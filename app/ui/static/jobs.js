// /ui: the tenant's jobs, newest first, refreshed every few seconds.
"use strict";

async function refreshJobs() {
  try {
    const { data } = await api("/v1/jobs?limit=100");
    const body = document.querySelector("#jobs tbody");
    body.replaceChildren();
    for (const job of data) {
      const row = document.createElement("tr");
      cell(row, "").append(link(`/ui/jobs/${job.id}`, job.id));
      cell(row, job.status, `status ${job.status}`);
      cell(row, job.spec.base_model);
      cell(row, `${job.progress.epoch.toFixed(2)} / ${job.progress.total_epochs}`, "num");
      cell(row, new Date(job.created_at).toLocaleString());
      const model = cell(row, "");
      if (job.model_id) model.append(link(`/ui/models/${job.model_id}`, job.model_id));
      body.append(row);
    }
    showError("");
  } catch (error) {
    showError(error.message);
  }
}

refreshJobs();
setInterval(refreshJobs, 5000);
