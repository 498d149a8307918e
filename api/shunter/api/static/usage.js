// The Usage page: GPU-hours per team per day (GET /api/training/usage), waits per
// queue (the same, by queue) and each queue's share against its weight
// (GET /api/training/shares). The numbers are the server's; this only draws them.
"use strict";

import { query, request, saveSession, session } from "./api.js";
import { PALETTE, fmt, histogramRows, shareBars, stackedBars } from "./charts.js";

const $ = (selector) => document.querySelector(selector);
const MOST_SERIES = 7;  // more are summed as "other": a stack of 20 colours reads as none
let drawn = null;       // the last answers, drawn again when the window is resized

function notify(text, kind = "error") {
  const box = $("#notice");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
  if (seconds < 129600) return `${fmt(seconds / 3600)}h`;
  return `${fmt(seconds / 86400)}d`;
}

const percent = (f) => `${Math.round(f * 100)}%`;

function bucketLabels(buckets, step) {
  return buckets.map((iso) => {
    const d = new Date(iso);
    const day = d.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
    const hour = `${String(d.getUTCHours()).padStart(2, "0")}:00`;
    return step === "hour" ? { label: `${day} ${hour} UTC`, short: hour }
                           : { label: `${day} (UTC)`, short: day };
  });
}

function seriesOf(groups) {
  const series = groups.map((g) => ({ name: g.key, values: g.allocated_gpu_hours,
                                      total: g.total_allocated_gpu_hours }));
  if (series.length <= MOST_SERIES) return series;
  const rest = series.slice(MOST_SERIES - 1);
  const other = { name: `${rest.length} others`, total: rest.reduce((s, r) => s + r.total, 0),
                  values: rest[0].values.map((_, b) => rest.reduce((s, r) => s + r.values[b], 0)) };
  return [...series.slice(0, MOST_SERIES - 1), other];
}

// A histogram bound in its largest whole unit: 60 -> "1m", 86400 -> "1d".
function bound(seconds) {
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

function binLabels(bounds) {
  return [...bounds.map((b) => `≤${bound(b)}`), `>${bound(bounds[bounds.length - 1])}`];
}

// One colour per queue on the page, the same in the waits and the shares.
function queueColours(...names) {
  const sorted = [...new Set(names)].sort();
  return new Map(sorted.map((name, i) => [name, PALETTE[i % PALETTE.length]]));
}

function draw() {
  if (!drawn) return;
  const { usage, waits, shares } = drawn;
  const colours = queueColours(...(waits ? waits.groups.map((g) => g.key) : []),
                               ...(shares ? shares.queues.map((q) => q.queue) : []));
  if (usage) {
    const box = $("#gpu-hours-chart");
    if (usage.groups.length === 0) box.textContent = "No runs in this window.";
    else stackedBars(box, { buckets: bucketLabels(usage.buckets, usage.step),
                            series: seriesOf(usage.groups), unit: "GPU-h",
                            bucketLabel: usage.step });
  }
  if (waits) {
    const rows = waits.groups.filter((g) => g.wait_histogram.some((c) => c > 0)).map((g) => ({
      name: g.key, counts: g.wait_histogram, colour: colours.get(g.key),
      stat: `p50 ${duration(g.wait_seconds_p50)} · p90 ${duration(g.wait_seconds_p90)}`
            + ` · ${g.wait_histogram.reduce((s, c) => s + c, 0)} runs`,
    }));
    const box = $("#waits-chart");
    if (rows.length === 0) box.textContent = "No run was admitted in this window.";
    else histogramRows(box, { rows, bins: binLabels(waits.wait_bounds) });
  }
  if (shares) drawShares(shares, colours);
}

function drawShares(shares, colours) {
  const rows = shares.queues.map((q) => {
    const reported = q.share !== null && q.share !== undefined;
    const share = reported ? q.share : q.usage_share;
    const what = reported ? "share" : "used";
    const shareText = share === null || share === undefined ? "no usage" : `${percent(share)} ${what}`;
    const cohort = q.cohort ? `cohort ${q.cohort}` : "no cohort";
    return {
      name: q.queue, colour: colours.get(q.queue), share: share ?? null, weight: q.normalized_weight, shareText,
      weightText: `${q.weight} (${percent(q.normalized_weight)} of ${cohort})`,
      text: `${shareText} · weight ${percent(q.normalized_weight)}`,
    };
  });
  const box = $("#shares-chart");
  if (rows.length === 0) box.textContent = "No queues.";
  else shareBars(box, { rows });
  $("#shares-note").textContent = shares.usage_available
    ? `(bars: the queue's part of its cohort's GPU-hours over the last`
      + ` ${fmt(shares.window_hours / 24, 0)} days, or its share as the operator reports it;`
      + " black ticks: its weight's part of the cohort's)"
    : "(usage unavailable: PostgreSQL could not be read)";
}

async function load() {
  const days = Number($("#days").value);
  const by = $("#by").value;
  const step = days <= 2 ? "hour" : "day";
  const now = new Date();
  const since = new Date(now.getTime() - days * 86400000).toISOString();
  const window = { since, until: now.toISOString(), step };
  const [usage, waits, shares] = await Promise.all([
    request("GET", `/api/training/usage${query({ ...window, by })}`),
    by === "queue" ? null : request("GET", `/api/training/usage${query({ ...window, by: "queue" })}`),
    request("GET", `/api/training/shares${query({ window_hours: days * 24 })}`),
  ]);
  const failed = [usage, waits, shares].find((a) => a && a.status !== 200);
  notify(failed ? (failed.data && failed.data.message) || `HTTP ${failed.status}` : "");
  drawn = {
    usage: usage.status === 200 ? usage.data : null,
    waits: by === "queue" ? (usage.status === 200 ? usage.data : null)
                          : (waits.status === 200 ? waits.data : null),
    shares: shares.status === 200 ? shares.data : null,
  };
  const note = drawn.usage ? `per ${step} (UTC), split by ${by}; each part named at the right with its total` : "";
  $("#gpu-hours-note").textContent = note ? `(${note})` : "";
  const gaps = drawn.usage && drawn.usage.gaps;
  $("#gaps").hidden = !(gaps && gaps.missing_attempts > 0);
  if (gaps) $("#gaps").textContent = `${gaps.missing_attempts} runs of ${gaps.jobs} jobs are`
    + ` missing from these totals. ${gaps.bound}`;
  draw();
}

$("#namespace").value = session.namespace;
$("#token").value = session.token;
$("#settings").addEventListener("submit", (event) => {
  event.preventDefault();
  saveSession($("#namespace").value.trim(), $("#token").value.trim());
  load();
});
let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(draw, 100);
});
load();
