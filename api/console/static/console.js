// Progressive enhancement only: every page reads the same without this file.
"use strict";

// Times: the server writes UTC; show them in the viewer's zone and keep UTC on hover.
function localizeTimes(root) {
  const format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZoneName: "short",
  });
  for (const el of root.querySelectorAll("time[datetime]:not([data-local])")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) {
      el.textContent = format.format(at);
      el.dataset.local = "1";
    }
  }
}

document.addEventListener("DOMContentLoaded", () => localizeTimes(document));
window.cameleerConsole = { localizeTimes };

// Operation page: the engine's progress and the step list, live from the server's event stream.
function badge(status) {
  const span = document.createElement("span");
  span.className = "badge badge-" + String(status).toLowerCase();
  span.textContent = status;
  return span;
}

function cell(row, text, extra) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (extra) td.appendChild(extra);
  row.appendChild(td);
  return td;
}

// A time as the server's `when` filter marks it up; localizeTimes shows it in the viewer's zone.
function timeElement(iso) {
  const at = document.createElement("time");
  at.setAttribute("datetime", iso);
  at.title = iso;
  at.textContent = iso;
  return at;
}

function appendProgress(tbody, event) {
  if (tbody.querySelector(`tr[data-event="${event.id}"]`)) return;
  const row = document.createElement("tr");
  row.dataset.event = event.id;
  row.className = "new";
  cell(row, event.id);
  cell(row, event.step);
  cell(row, event.type);
  const resourceType = event.resource_type ? document.createElement("div") : null;
  if (resourceType) { resourceType.className = "muted small"; resourceType.textContent = event.resource_type; }
  cell(row, event.resource, resourceType);
  cell(row, event.op);
  cell(row, event.message);
  cell(row, "", timeElement(event.at));
  tbody.appendChild(row);
  localizeTimes(row);
  const empty = document.getElementById("events-empty");
  if (empty) empty.hidden = true;
}

function showOperation(state) {
  document.getElementById("op-status").replaceChildren(badge(state.status));
  document.getElementById("op-step").textContent = state.current_step || "—";
  const finishedAt = document.getElementById("op-finished");
  if (state.finished_at) {
    finishedAt.replaceChildren(timeElement(state.finished_at));
    localizeTimes(finishedAt);
  }
  const error = document.getElementById("op-error");
  error.textContent = state.error || "";
  error.hidden = !state.error;
  for (const step of state.steps) {
    const row = document.getElementById("step-" + step.name);
    if (!row) continue;
    row.querySelector(".step-status").replaceChildren(badge(step.status));
    row.querySelector(".step-attempts").textContent = step.attempts;
    const detail = row.querySelector(".step-detail");
    detail.replaceChildren();
    if (step.note) { const note = document.createElement("div"); note.className = "muted"; note.textContent = step.note; detail.appendChild(note); }
    if (step.error) { const err = document.createElement("div"); err.className = "error"; err.textContent = step.error; detail.appendChild(err); }
  }
}

function followOperation(root) {
  const url = root.dataset.events;
  if (!url || !window.EventSource) return;
  const tbody = root.querySelector("#events tbody");
  const live = document.getElementById("op-live");
  const source = new EventSource(url);
  source.addEventListener("progress", (e) => appendProgress(tbody, JSON.parse(e.data)));
  source.addEventListener("operation", (e) => {
    const state = JSON.parse(e.data);
    showOperation(state);
    if (state.status !== root.dataset.status) {
      // The preview and the buttons that fit the new state are rendered by the server.
      for (const button of root.querySelectorAll("form button")) button.disabled = true;
      if (state.status === "AWAITING_CONFIRMATION") { source.close(); window.location.reload(); }
    }
  });
  source.addEventListener("end", (e) => {
    source.close();
    if (live) live.textContent = "Finished: " + JSON.parse(e.data).status + ".";
  });
  if (live) live.textContent = "Live: following the engine's progress.";
}

document.addEventListener("DOMContentLoaded", () => {
  const operation = document.getElementById("operation");
  if (operation) followOperation(operation);
});

// Mailed links (signup, invitation, password reset): the token travels in the URL fragment,
// which never reaches the server. Move it into the form and drop it from the address bar.
function tokenFromFragment() {
  const field = document.querySelector("input[data-token-from-fragment]");
  const found = /(?:^#|&)token=([A-Za-z0-9_-]+)/.exec(window.location.hash);
  if (!field || !found) return;
  field.value = found[1];
  const wrapper = document.getElementById("token-field");
  if (wrapper) wrapper.hidden = true;
  const note = document.getElementById("token-filled");
  if (note) note.hidden = false;
  history.replaceState(null, "", window.location.pathname + window.location.search);
}

document.addEventListener("DOMContentLoaded", tokenFromFragment);
