// Shunter's web UI: the job list pushed by the server (GET /stream), a submit form,
// the job's detail with Events and logs, and the history from PostgreSQL.
// It shows what the server decides: rows come in the server's order and each job's
// buttons are its `actions`; nothing here knows which phases allow what.
"use strict";

import { query, request, saveSession, session, subscribe } from "./api.js";
import { renderDetail, closeDetail } from "./detail.js";
import { searchHistory } from "./history.js";
import { progressCell, tickAges } from "./progress.js";

const state = {
  inFlight: new Map(),  // job id -> the action under way
  selected: null,       // job id shown in the detail view
  lastList: null,       // the last `live` event, re-rendered as ages move on
  stream: null,
  expanded: new Set(),  // arrays whose runs are shown under them
};

const LABELS = { cancel: "Cancel", suspend: "Suspend", resume: "Resume" };
const PENDING = { cancel: "Cancelling…", suspend: "Suspending…", resume: "Resuming…" };
const $ = (selector) => document.querySelector(selector);

export function notify(text, kind = "info") {
  const box = $("#notice");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
}

export function age(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  return `${Math.round(seconds / 3600)}h`;
}

// A user name as Kubernetes gives it, shortened for a cell (the full one in the title).
export function shortUser(user) {
  if (!user) return "";
  const sa = user.match(/^system:serviceaccount:([^:]+):(.+)$/);
  return sa ? `${sa[2]} (${sa[1]})` : user;
}

function cell(text, className, title) {
  const td = document.createElement("td");
  const span = document.createElement("span");
  span.textContent = text === null || text === undefined ? "" : String(text);
  td.append(span);
  if (className) td.className = className;
  if (title) td.title = title;
  return td;
}

// One button per action the server lists for the job; the request goes to
// POST /api/training/<action>/<id>, the route of that action.
export function actionButtons(job) {
  const pending = state.inFlight.get(job.job_id);
  const actions = pending && !job.actions.includes(pending) ? [pending, ...job.actions] : job.actions;
  return actions.map((action) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `action ${action}`;
    button.textContent = pending === action ? PENDING[action] || `${action}…` : LABELS[action] || action;
    button.disabled = pending !== undefined;
    button.addEventListener("click", () => act(job.job_id, action));
    return button;
  });
}

function ageCell(iso) {
  const td = cell(age(iso), "wide age");
  td.dataset.created = iso;
  return td;
}

// An array is one line with its runs per phase; ▸ shows its runs under it (each a job
// of its own, NAME-INDEX, with its own buttons).
function arrayToggle(job) {
  const open = state.expanded.has(job.job_id);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "expand";
  button.textContent = open ? "▾" : "▸";
  button.title = open ? "Hide its runs" : "Show its runs";
  button.setAttribute("aria-expanded", String(open));
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    if (open) state.expanded.delete(job.job_id); else state.expanded.add(job.job_id);
    if (state.lastList) render(state.lastList);
  });
  return button;
}

function arrayCell(array) {
  const parts = ["running", "queued", "suspended", "failed", "cancelled"]
    .filter((k) => array[k]).map((k) => `${array[k]} ${k}`);
  const title = `${array.count} runs, at most ${array.max_parallel} at once: ` +
    `${array.completed} completed, ${array.running} running, ${array.queued} queued, ` +
    `${array.suspended} suspended, ${array.failed} failed, ${array.cancelled} cancelled, ` +
    `${array.not_created} not created yet`;
  const td = cell(`${array.completed}/${array.count} done`, "array-counts", title);
  const more = document.createElement("span");
  more.className = "message";
  more.textContent = parts.join(", ");
  td.append(more);
  return td;
}

function row(job, run = false) {
  const tr = document.createElement("tr");
  tr.dataset.job = job.job_id;
  tr.dataset.status = job.status;
  if (run) tr.className = "run";
  if (job.array) tr.dataset.array = job.job_id;
  // The name on one line (cut with an ellipsis, whole in the tooltip), the job's
  // message under it in small print.
  const name = cell(job.job_id, "name", job.message ? `${job.job_id}\n${job.message}` : job.job_id);
  name.firstChild.className = "id";
  const message = document.createElement("span");
  message.className = "message";
  message.textContent = job.message || "";
  name.append(message);
  if (job.array) name.prepend(arrayToggle(job));
  name.tabIndex = 0;
  name.addEventListener("click", () => select(job.job_id));
  name.addEventListener("keydown", (e) => { if (e.key === "Enter") select(job.job_id); });
  const actions = document.createElement("td");
  actions.className = "actions";
  actions.append(...actionButtons(job));
  tr.append(
    name,
    cell(job.status.toUpperCase(), `phase ${job.status}`),
    cell(job.queue_position ? `#${job.queue_position}` : "", "",
         job.estimated_start ? `estimated start ${estimateText(job.estimated_start,
                                                               job.estimated_start_range)}` : ""),
    cell(job.gpus),
    job.array ? arrayCell(job.array) : progressCell(job),
    cell(job.priority, "wide"),
    ageCell(job.created_at),
    cell(shortUser(job.submitted_by), "wide user", job.submitted_by || ""),
    actions,
  );
  return tr;
}

function render(list) {
  state.lastList = list;
  // The server's order, each array's runs (those in the list) under it when expanded.
  const arrays = new Set(list.items.filter((j) => j.array).map((j) => j.job_id));
  const runs = new Map();
  for (const job of list.items) {
    if (job.array_run && arrays.has(job.array_run.array)) {
      if (!runs.has(job.array_run.array)) runs.set(job.array_run.array, []);
      runs.get(job.array_run.array).push(job);
    }
  }
  const rows = [];
  for (const job of list.items) {
    if (job.array_run && arrays.has(job.array_run.array)) continue;
    rows.push(row(job));
    if (job.array && state.expanded.has(job.job_id)) {
      const mine = (runs.get(job.job_id) || []).sort((a, b) => a.array_run.index - b.array_run.index);
      rows.push(...mine.map((r) => row(r, true)));
    }
  }
  $("#jobs tbody").replaceChildren(...rows);
  $("#empty").hidden = list.items.length > 0;
  // The counts cover every job in the namespace, not only the rows shown.
  $("#counts").textContent =
    `${list.running_count} running · ${list.queued_count} queued · ${list.namespace}`;
}

async function act(jobId, action) {
  state.inFlight.set(jobId, action);
  if (state.lastList) render(state.lastList);  // the button is disabled at once
  try {
    const { data } = await request(
      "POST", `/api/training/${action}/${encodeURIComponent(jobId)}${query()}`);
    notify(data && data.message ? `${jobId}: ${data.message}` : `${jobId}: no answer`,
           data && data.success ? "ok" : "error");
  } catch (error) {
    notify(`${jobId}: ${error.message}`, "error");
  } finally {
    state.inFlight.delete(jobId);
    if (state.lastList) render(state.lastList);
  }
}

function connect() {
  if (state.stream) state.stream.close();
  state.stream = null;
  if (session.authRequired && !session.token) {
    notify("Enter a Kubernetes token (kubectl create token NAME) and press Use", "info");
    return;
  }
  const path = `/api/training/stream${query({ limit: 200, job: state.selected })}`;
  state.stream = subscribe(path, (event, data) => {
    if (event === "live") render(data);
    else if (event === "job" && state.selected) {
      if (data.job) renderDetail(data, actionButtons, select);
      else { closeDetail(); state.selected = null; }
    }
  }, (status, detail) => {
    const badge = $("#connection");
    badge.textContent = status;
    badge.className = `connection ${status}`;
    if (status === "refused") notify(detail, "error");
  });
}

function select(jobId) {
  state.selected = jobId;
  connect();  // the stream now carries this job and its Events too
}

$("#settings").addEventListener("submit", (event) => {
  event.preventDefault();
  saveSession($("#namespace").value.trim(), $("#token").value.trim());
  notify("Settings saved for this tab");
  state.selected = null;
  closeDetail();
  connect();
});

// The jobs to wait for (POST /submit's depends_on: name, condition, and step with
// Checkpointed only). A row without a name is left out; anything else goes to the
// server as typed, which judges it (a missing step, an unknown job, a cycle).
function dependencies() {
  const found = [];
  for (const row of document.querySelectorAll("#depends-on li.dependency")) {
    const name = row.querySelector("[name=dep_name]").value.trim();
    if (!name) continue;
    const condition = row.querySelector("[name=dep_condition]").value;
    const entry = { name, condition };
    const step = row.querySelector("[name=dep_step]").value;
    if (condition === "Checkpointed" && step !== "") entry.step = Number(step);
    found.push(entry);
  }
  return found;
}

function formChanged() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(preview, 600);
}

function addDependency() {
  const row = $("#dependency-row").content.firstElementChild.cloneNode(true);
  const condition = row.querySelector("[name=dep_condition]");
  const step = row.querySelector("[name=dep_step]");
  // The step is asked for with Checkpointed only (its place kept, the rows aligned).
  condition.addEventListener("change", () => {
    step.classList.toggle("unused", condition.value !== "Checkpointed");
  });
  row.querySelector("button.remove").addEventListener("click", () => {
    row.remove();
    formChanged();
  });
  $("#depends-on").append(row);
  row.querySelector("[name=dep_name]").focus();
}

// The server's refusal of a submit, in the form beside the fields it names.
function showSubmitError(text) {
  const box = $("#submit-error");
  box.textContent = text || "";
  box.hidden = !text;
}

function submitted(form) {
  const body = {
    gpus: Number(form.get("gpus")),
    priority: Number(form.get("priority")),
    queue: String(form.get("queue") || "default"),
    termination_grace_period_seconds: Number(form.get("grace")),
  };
  for (const [field, key] of [["name", "name"], ["image", "image"]]) {
    if (form.get(field)) body[key] = String(form.get(field)).trim();
  }
  const args = String(form.get("args") || "").split("\n").map((a) => a.trim()).filter(Boolean);
  if (args.length) body.args = args;
  if (form.get("max_runtime")) body.max_runtime_seconds = Number(form.get("max_runtime"));
  if (form.get("array_count")) {
    body.array = { count: Number(form.get("array_count")) };
    if (form.get("array_parallel")) body.array.max_parallel = Number(form.get("array_parallel"));
  }
  const dependsOn = dependencies();
  if (dependsOn.length) body.depends_on = dependsOn;
  if (form.get("cancel_dependents")) body.cancel_dependents = true;
  if (session.simulator) {  // the kwok Stages' knobs, offered only by a demo server
    const annotations = {};
    if (form.get("run_for")) annotations["sim.shunter.dev/run-for"] = String(form.get("run_for"));
    if (form.get("fail_after")) annotations["sim.shunter.dev/fail-after"] = String(form.get("fail_after"));
    if (Object.keys(annotations).length) body.pod_annotations = annotations;
    if (form.get("hang")) body.pod_labels = { "sim.shunter.dev/hang-on-delete": "true" };
  }
  return body;
}

$("#submit").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  // No preview of this form after it is created: a debounced one due now would be a
  // dry run of a name that exists (409), and one on its way is answered first.
  clearTimeout(previewTimer);
  previewAsked++;
  if (previewInFlight) await previewInFlight.catch(() => {});
  try {
    const { status, data } = await request(
      "POST", `/api/training/submit${query()}`, submitted(new FormData(event.target)));
    const refusal = status === 201 ? "" : (data && data.message) || `HTTP ${status}`;
    notify(status === 201 ? `Submitted ${data.job_id}` : refusal, status === 201 ? "ok" : "error");
    showSubmitError(refusal);
    if (status === 201) $("#preview").hidden = true;  // it is in the list now
  } catch (error) {
    notify(`Submit failed: ${error.message}`, "error");
    showSubmitError(`Submit failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
});

// The what-if (POST /submit?dry_run=true): shown before Submit, again after each
// change of the form (debounced); nothing is created.
let previewTimer = null;
let previewAsked = 0;
let previewInFlight = null;  // the request of the preview on its way, if any

function estimateText(start, range, now = Date.now()) {
  if (!start) return range && range.reason ? `no estimate: ${range.reason}` : "";
  const minutes = Math.round((new Date(start).getTime() - now) / 60000);
  let when = minutes <= 0 ? "now" : minutes < 90 ? `in ${minutes} min`
    : `in ${(minutes / 60).toFixed(1)} h`;
  if (range && range.earliest && range.latest) {
    const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    when += ` (${time(range.earliest)}–${time(range.latest)})`;
  }
  return when;
}

async function preview() {
  const form = $("#submit");
  const box = $("#preview");
  const asked = ++previewAsked;
  const sent = request(
    "POST", `/api/training/submit${query({ dry_run: "true" })}`, submitted(new FormData(form)));
  previewInFlight = sent;
  try {
    const { status, data } = await sent;
    if (asked !== previewAsked) return;  // a newer preview, or the submit, came since
    box.hidden = false;
    box.dataset.status = status === 200 ? "ok" : "error";
    if (status !== 200) {
      box.replaceChildren(`Would be refused: ${(data && data.message) || `HTTP ${status}`}`);
      return;
    }
    const lines = [data.message];
    if (data.estimated_start) {
      lines.push(`Estimated start: ${estimateText(data.estimated_start, data.estimated_start_range)}`);
    }
    if (data.would_preempt) lines.push(`Would preempt: ${data.preempts.join(", ")}`);
    for (const alt of data.alternatives || []) lines.push(`Sooner ${alt.message}`);
    box.replaceChildren(...lines.map((text) => {
      const p = document.createElement("p");
      p.textContent = text;
      return p;
    }));
  } catch (error) {
    if (asked !== previewAsked) return;
    box.hidden = false;
    box.dataset.status = "error";
    box.replaceChildren(`Preview failed: ${error.message}`);
  } finally {
    if (previewInFlight === sent) previewInFlight = null;
  }
}

$("#preview-button").addEventListener("click", preview);
$("#submit").addEventListener("input", formChanged);
$("#add-dependency").addEventListener("click", addDependency);

$("#history-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  searchHistory(new FormData(event.target), 0);
});

async function start() {
  $("#namespace").value = session.namespace;
  $("#token").value = session.token;
  const { status, data } = await request("GET", "/api/config");
  if (status === 200) {
    session.authRequired = data.auth_required;
    session.simulator = Boolean(data.simulator);
    if (!session.namespace) session.namespace = data.default_namespace;
    // Not over what the user typed while the configuration was on its way.
    if (!$("#namespace").value) $("#namespace").value = session.namespace;
  }
  $("#token-field").hidden = !session.authRequired;
  $("#simulator").hidden = !session.simulator;
  connect();
  // Ages move on between pushes: update them in place (no request, no re-render).
  setInterval(() => {
    for (const td of document.querySelectorAll("#jobs td.age")) {
      td.firstChild.textContent = age(td.dataset.created);
    }
    tickAges(document);
  }, 5000);
}

start();
