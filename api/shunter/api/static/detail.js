// The detail view of one job: its fields, its actions, its Events (all pushed by the
// server's stream) and its logs (GET /status/{id}/logs, on request; Follow streams).
"use strict";

import { query, readText } from "./api.js";
import { progressFields } from "./progress.js";

const $ = (selector) => document.querySelector(selector);
const logs = { job: null, controller: null };

const FIELDS = [
  ["Status", (j) => j.status],
  ["Message", (j) => j.message],
  ["Submitted by", (j) => j.submitted_by],
  ["Cancelled by", (j) => j.cancelled_by],
  ["Queue", (j) => `${j.queue}${j.queue_position ? ` (#${j.queue_position})` : ""}`],
  ["Estimated start", (j) => estimate(j)],
  ["GPUs · priority", (j) => `${j.gpus} · ${j.priority}`],
  ["Image", (j) => j.image],
  // Names only; a variable read from a Secret shows which Secret and key (the value is
  // read by the trainer Pod's kubelet, never by the API).
  ["Environment", (j) => (j.env || []).map((e) =>
    e.secret ? `${e.name} ← Secret ${e.secret}, key ${e.key}` : e.name).join("; ") || null],
  ["Pod", (j) => j.pod_name && `${j.pod_name}${j.node_name ? ` on ${j.node_name}` : ""}`],
  ["Submitted", (j) => when(j.created_at)],
  ["Admitted", (j) => when(j.admitted_at)],
  ["Started", (j) => when(j.started_at)],
  ["Finished", (j) => when(j.completed_at)],
];

// A queued job's estimated start from the operator's plan, with its range, or why
// there is none (GET /status: estimated_start, estimated_start_range).
function estimate(j) {
  const range = j.estimated_start_range;
  if (!j.estimated_start) return range && range.reason ? `none: ${range.reason}` : null;
  const span = range && range.earliest && range.latest
    ? ` (between ${when(range.earliest)} and ${when(range.latest)})` : "";
  return `${when(j.estimated_start)}${span}`;
}

// Shown only for an array and for a run of one.
const ARRAY_FIELDS = [
  ["Array", (j) => j.array && `${j.array.count} runs, at most ${j.array.max_parallel} at once: ` +
    `${j.array.completed} completed, ${j.array.running} running, ${j.array.queued} queued, ` +
    `${j.array.suspended} suspended, ${j.array.failed} failed, ${j.array.cancelled} cancelled, ` +
    `${j.array.not_created} not created yet`],
  ["Run of", (j) => j.array_run && `array ${j.array_run.array}, index ${j.array_run.index}`],
];

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : null;
}

// Upstream and downstream jobs as links that open their own page (the server judged
// each condition: shunter.api.lineage; the UI only shows its state).
function chain(items, open, label) {
  if (!items || !items.length) return null;
  const span = document.createElement("span");
  span.className = "chain";
  items.forEach((item, i) => {
    if (i) span.append("; ");
    const link = document.createElement("a");
    link.href = "#";
    link.className = "id";
    link.textContent = item.name;
    link.addEventListener("click", (event) => { event.preventDefault(); open(item.name); });
    const step = item.step != null ? ` ${item.step}` : "";
    span.append(link, ` ${item.condition}${step}: ${label(item)}`);
  });
  return span;
}

export function renderDetail({ job, events }, actionButtons, open = () => {}) {
  const panel = $("#detail");
  const fresh = logs.job !== job.job_id;
  panel.hidden = false;
  $("#detail-name").textContent = job.job_id;
  $("#detail-actions").replaceChildren(...actionButtons(job));
  const fields = $("#detail-fields");
  fields.replaceChildren();
  // The trainer's reports (elements) after the job's own fields; absent ones are left out.
  const rows = [...FIELDS.map(([label, value]) => [label, value(job) ?? "—"]),
    ...ARRAY_FIELDS.map(([label, value]) => [label, value(job)]).filter(([, text]) => text),
    ["Depends on", chain(job.upstream, open, (u) => u.state) ?? "—"],
    ["Dependents", chain(job.downstream, open, (d) => d.status) ?? "—"],
    ...progressFields(job).filter(([, element]) => element)];
  for (const [label, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.append(value);
    fields.append(dt, dd);
  }
  $("#detail-events").replaceChildren(...events.map((e) => {
    const li = document.createElement("li");
    li.className = (e.type || "").toLowerCase();
    li.textContent = `${e.time ? new Date(e.time).toLocaleTimeString() : ""} ${e.reason}: ${e.message}`;
    return li;
  }));
  if (fresh) {
    stopLogs();
    logs.job = job.job_id;
    $("#detail-logs").hidden = true;
    $("#logs-follow").checked = false;
    panel.scrollIntoView({ block: "nearest" });
  }
  // A job without a Pod has no logs to ask for (the server would answer 404).
  $("#logs-load").disabled = !job.pod_name;
  $("#logs-follow").disabled = !job.pod_name;
}

export function closeDetail() {
  stopLogs();
  logs.job = null;
  $("#detail").hidden = true;
}

function stopLogs() {
  if (logs.controller) logs.controller.abort();
  logs.controller = null;
}

async function loadLogs(follow) {
  stopLogs();
  const jobId = logs.job;
  if (!jobId) return;
  const pre = $("#detail-logs");
  pre.hidden = false;
  pre.textContent = "";
  const controller = new AbortController();
  logs.controller = controller;
  const path = `/api/training/status/${encodeURIComponent(jobId)}/logs${query({ tail: 200, follow: follow || undefined })}`;
  try {
    const answer = await readText(path, (text) => {
      pre.textContent += text;
      pre.scrollTop = pre.scrollHeight;
    }, controller.signal);
    if (answer.status !== 200) {
      pre.textContent = (answer.data && answer.data.message) || `HTTP ${answer.status}`;
      pre.className = "error";
    } else {
      pre.className = answer.simulated === "true" ? "simulated" : "";
      if (!pre.textContent) pre.textContent = "(no output yet)";
    }
  } catch (error) {
    if (error.name !== "AbortError") pre.textContent += `\n(${error.message})`;
  } finally {
    if (logs.controller === controller) {
      logs.controller = null;
      $("#logs-follow").checked = false;
    }
  }
}

$("#logs-load").addEventListener("click", () => loadLogs(false));
$("#logs-follow").addEventListener("change", (event) => {
  if (event.target.checked) loadLogs(true);
  else stopLogs();
});
