// Shared by the pages: the API key (kept in localStorage) and calls to the /v1 API with it.
"use strict";

const KEY_STORAGE = "tuneserve-api-key";

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

function renderKeyBar() {
  const bar = document.getElementById("key-bar");
  const input = document.createElement("input");
  input.type = "password";
  input.placeholder = "API key (tuneserve keys create)";
  input.value = apiKey();
  input.id = "api-key";
  input.addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, input.value.trim());
    location.reload();
  });
  bar.append("API key ", input);
}

class ApiError extends Error {}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${apiKey()}` };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = `${body.error.code}: ${body.error.message}`;
    } catch (_) { /* not the JSON error shape */ }
    throw new ApiError(message);
  }
  return response.json();
}

// Server-Sent Events over fetch, so that the Authorization header can be sent (EventSource
// cannot). Reconnects with Last-Event-ID when the stream drops or ends early (the server ends
// long streams, and drops clients that fall behind); resolves after the job's final event.
const FINAL_EVENTS = ["succeeded", "failed", "cancelled"];

async function followEvents(path, onEvent) {
  let lastId = null;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const headers = { Authorization: `Bearer ${apiKey()}` };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await fetch(path, { headers });
      if (!response.ok) throw new ApiError(`${response.status} on the event stream`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;  // ended before the final event: reconnect
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const fields = { data: [] };
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const name = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (name === "data") fields.data.push(text); else fields[name] = text;
          }
          if (!fields.data.length) continue;
          if (fields.id !== undefined) lastId = fields.id;
          const event = JSON.parse(fields.data.join("\n"));
          onEvent(event);
          if (FINAL_EVENTS.includes(event.type)) return;
          attempt = 0;
        }
      }
    } catch (error) {
      if (error instanceof ApiError) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
  return td;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

document.addEventListener("DOMContentLoaded", renderKeyBar);
