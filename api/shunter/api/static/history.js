// History from PostgreSQL (GET /api/training/jobs): finished jobs, including those
// whose TrainingJob is gone, with the server's filters; newest first, pages of 50.
"use strict";

import { query, request } from "./api.js";

const $ = (selector) => document.querySelector(selector);
const PAGE = 50;
let last = { filters: {}, offset: 0 };

function filtersOf(form) {
  const filters = {};
  for (const key of ["status", "queue", "name_contains", "deleted"]) {
    const value = String(form.get(key) || "").trim();
    if (value) filters[key] = value;
  }
  for (const key of ["since", "until"]) {  // datetime-local is local time: send it in UTC
    const value = form.get(key);
    if (value) filters[key] = new Date(String(value)).toISOString();
  }
  return filters;
}

function cell(text, title) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (title) td.title = title;
  return td;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

function row(item) {
  const tr = document.createElement("tr");
  tr.dataset.job = item.job_id;
  tr.append(
    cell(item.job_id, item.uid), cell(item.status), cell(item.queue), cell(item.gpus),
    cell(item.submitted_by), cell(item.cancelled_by), cell(when(item.created_at)),
    cell(when(item.completed_at)), cell(when(item.deleted_at)),
  );
  if (item.error) tr.title = item.error;
  return tr;
}

export async function searchHistory(form, offset) {
  const filters = form ? filtersOf(form) : last.filters;
  last = { filters, offset };
  const summary = $("#history-summary");
  const { status, data } = await request(
    "GET", `/api/training/jobs${query({ ...filters, limit: PAGE, offset })}`);
  const table = $("#history-table");
  if (status !== 200) {
    summary.textContent = (data && data.message) || `HTTP ${status}`;
    summary.className = "error";
    return;
  }
  summary.className = "";
  const body = table.querySelector("tbody");
  if (offset === 0) body.replaceChildren();
  body.append(...data.items.map(row));
  table.hidden = body.children.length === 0;
  summary.textContent = data.total === 0
    ? "No job matches."
    : `${body.children.length} of ${data.total} jobs`;
  $("#history-more").hidden = body.children.length >= data.total;
}

$("#history-more").addEventListener("click", () => searchHistory(null, last.offset + PAGE));
