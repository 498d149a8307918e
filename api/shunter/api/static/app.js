// Shunter's job list: polls the API every second, submits sample jobs, cancels.
// No build step: plain DOM code. The token is kept in sessionStorage (this tab only).
"use strict";

const POLL_MS = 1000;
const state = {
  authRequired: true,    // from /api/config: whether requests need a bearer token
  namespace: sessionStorage.getItem("shunter.namespace") || "",
  token: sessionStorage.getItem("shunter.token") || "",
  inFlight: new Set(),   // job ids whose cancel request is under way
  selected: null,        // job id shown in the detail view
  lastList: null,        // the last /live answer, to re-render without a request
};

const $ = (selector) => document.querySelector(selector);

function query(extra = {}) {
  const params = new URLSearchParams(extra);
  if (state.namespace) params.set("namespace", state.namespace);
  const text = params.toString();
  return text ? `?${text}` : "";
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  return { status: response.status, data };
}

function notify(text, kind = "info") {
  const box = $("#notice");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
}

function age(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  return `${Math.round(seconds / 3600)}h`;
}

function progress(job) {
  if (job.status === "completed") return "100%";
  if (!job.started_at || job.completed_at) return "";
  return `running ${age(job.started_at)}`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function cancellable(job) {
  return ["queued", "starting", "running"].includes(job.status) && !job.cancel_requested;
}

function row(job) {
  const tr = document.createElement("tr");
  tr.dataset.job = job.job_id;
  tr.dataset.status = job.status;
  const name = cell(job.job_id, "name");
  name.tabIndex = 0;
  name.addEventListener("click", () => showDetail(job.job_id));
  tr.append(
    name,
    cell(job.status.toUpperCase(), `phase ${job.status}`),
    cell(job.queue_position ? `#${job.queue_position}` : ""),
    cell(job.gpus), cell(job.priority), cell(age(job.created_at)),
    cell(progress(job)), cell(job.message, "message"),
  );
  const actions = document.createElement("td");
  if (cancellable(job) || state.inFlight.has(job.job_id)) {
    const button = document.createElement("button");
    button.textContent = state.inFlight.has(job.job_id) ? "Cancelling…" : "Cancel";
    button.className = "cancel";
    button.disabled = state.inFlight.has(job.job_id);
    button.addEventListener("click", () => cancel(job.job_id));
    actions.append(button);
  }
  tr.append(actions);
  return tr;
}

const ORDER = { running: 0, starting: 1, cancelling: 2, queued: 3 };

function render(list) {
  state.lastList = list;
  const jobs = [...list.items].sort((a, b) => {
    const ra = ORDER[a.status] ?? 9, rb = ORDER[b.status] ?? 9;
    if (ra !== rb) return ra - rb;
    if (a.status === "queued") return (a.queue_position ?? 1e9) - (b.queue_position ?? 1e9);
    return Date.parse(b.created_at) - Date.parse(a.created_at);
  });
  const body = $("#jobs tbody");
  body.replaceChildren(...jobs.map(row));
  $("#empty").hidden = jobs.length > 0;
  // The counts cover every job in the namespace, not only the rows shown.
  $("#counts").textContent =
    `${list.running_count} running · ${list.queued_count} queued · ${list.namespace}`;
}

function ready() {
  if (state.authRequired && !state.token) {
    notify("Enter a Kubernetes token (kubectl create token NAME) and press Use", "info");
    return false;
  }
  return true;
}

async function refresh() {
  try {
    if (!ready()) return;
    await refreshSoon();
    if (state.selected) await showDetail(state.selected, false);
  } catch (error) {
    notify(`API unreachable: ${error.message}`, "error");
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

async function cancel(jobId) {
  state.inFlight.add(jobId);
  if (state.lastList) render(state.lastList); // disable the button at once
  try {
    const { data } = await api("POST", `/api/training/cancel/${encodeURIComponent(jobId)}${query()}`);
    notify(data && data.message ? `${jobId}: ${data.message}` : `${jobId}: no answer`,
           data && data.success ? "ok" : "error");
  } finally {
    state.inFlight.delete(jobId);
    await refreshSoon();
  }
}

async function refreshSoon() {
  if (!ready()) return;
  const { status, data } = await api("GET", `/api/training/live${query({ limit: 200 })}`);
  if (status === 200) render(data);
  else if (data && data.message) notify(data.message, "error");
}

async function showDetail(jobId, scroll = true) {
  state.selected = jobId;
  const [job, events] = await Promise.all([
    api("GET", `/api/training/status/${encodeURIComponent(jobId)}${query()}`),
    api("GET", `/api/training/status/${encodeURIComponent(jobId)}/events${query()}`),
  ]);
  if (job.status !== 200) { $("#detail").hidden = true; state.selected = null; return; }
  $("#detail").hidden = false;
  $("#detail-name").textContent = jobId;
  const times = $("#detail-times");
  times.replaceChildren();
  for (const [label, key] of [["Submitted", "created_at"], ["Admitted", "admitted_at"],
                              ["Started", "started_at"], ["Finished", "completed_at"]]) {
    const dt = document.createElement("dt"); dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = job.data[key] ? new Date(job.data[key]).toLocaleString() : "—";
    times.append(dt, dd);
  }
  const list = $("#detail-events");
  list.replaceChildren(...(events.status === 200 ? events.data : []).map((e) => {
    const li = document.createElement("li");
    li.className = (e.type || "").toLowerCase();
    li.textContent = `${e.time ? new Date(e.time).toLocaleTimeString() : ""} ${e.reason}: ${e.message}`;
    return li;
  }));
  if (scroll) $("#detail").scrollIntoView({ block: "nearest" });
}

$("#settings").addEventListener("submit", (event) => {
  event.preventDefault();
  state.namespace = $("#namespace").value.trim();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("shunter.namespace", state.namespace);
  sessionStorage.setItem("shunter.token", state.token);
  notify("Settings saved for this tab");
  refreshSoon();
});

$("#submit").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = {
    gpus: Number(form.get("gpus")),
    priority: Number(form.get("priority")),
    termination_grace_period_seconds: Number(form.get("grace")),
    pod_annotations: { "sim.shunter.dev/run-for": String(form.get("run_for") || "120s") },
  };
  if (form.get("name")) body.name = String(form.get("name"));
  if (form.get("hang")) body.pod_labels = { "sim.shunter.dev/hang-on-delete": "true" };
  const button = event.target.querySelector("button");
  button.disabled = true;
  try {
    const { status, data } = await api("POST", `/api/training/submit${query()}`, body);
    notify(status === 201 ? `Submitted ${data.job_id}` : (data && data.message) || `HTTP ${status}`,
           status === 201 ? "ok" : "error");
  } finally {
    button.disabled = false;
    await refreshSoon();
  }
});

async function start() {
  $("#namespace").value = state.namespace;
  $("#token").value = state.token;
  const { status, data } = await api("GET", "/api/config");
  if (status === 200) {
    state.authRequired = data.auth_required;
    if (!state.namespace) state.namespace = data.default_namespace;
    $("#namespace").value = state.namespace;
  }
  refresh();
}

start();
