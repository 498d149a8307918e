// What a job's trainer reported, as the server serves it: a progress bar (percent, or
// the step when the trainer gives no total), a loss sparkline drawn here from
// progress.losses (plain SVG, no library), the last checkpoint's age and "work lost if
// stopped now" (the server's figure, in GPU-minutes; how it was judged in the tooltip).
// Nothing here judges anything: the numbers are the server's.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

// The loss trail as a polyline scaled into width x height (a flat trail is drawn
// midway); null when there are fewer than two points to join.
export function sparkline(losses, width, height) {
  const values = (losses || []).filter((v) => Number.isFinite(v));
  if (values.length < 2) return null;
  const low = Math.min(...values);
  const high = Math.max(...values);
  const pad = 1.5;  // half the stroke, so the line is not cut at the edges
  const x = (i) => pad + (i * (width - 2 * pad)) / (values.length - 1);
  const y = (v) => (high === low ? height / 2 : pad + ((high - v) * (height - 2 * pad)) / (high - low));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const title = document.createElementNS(SVG, "title");
  title.textContent = `loss ${number(values[0])} → ${number(values[values.length - 1])}` +
    ` (last ${values.length} reports; min ${number(low)}, max ${number(high)})`;
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
  svg.append(title, line);
  return svg;
}

function number(value) {
  return Number(value.toPrecision(4)).toString();
}

export function seconds(total) {
  const s = Math.max(0, Math.round(total));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

// The checkpoint's age moves on between pushes: the server's age_seconds plus the time
// since the page received it (the browser's clock is never compared with the server's).
export function checkpointAge(element) {
  const base = Number(element.dataset.ageBase);
  const since = (performance.now() - Number(element.dataset.receivedAt)) / 1000;
  return seconds(base + since);
}

function aged(checkpoint, prefix) {
  const span = document.createElement("span");
  span.className = "ckpt-age";
  span.dataset.ageBase = String(checkpoint.age_seconds);
  span.dataset.receivedAt = String(performance.now());
  span.dataset.prefix = prefix;
  span.textContent = `${prefix}${checkpointAge(span)}`;
  span.title = `Last checkpoint: step ${checkpoint.step}, ${new Date(checkpoint.time).toLocaleString()}`;
  return span;
}

// GPU-minutes: one decimal under 10, whole above; a little but not nothing is "<0.1".
export function gpuMinutes(lost) {
  const minutes = lost.gpu_seconds / 60;
  if (minutes > 0 && minutes < 0.05) return "<0.1 GPU-min";
  return `${minutes >= 10 ? Math.round(minutes) : Number(minutes.toFixed(1))} GPU-min`;
}

function workLost(lost, prefix) {
  const span = document.createElement("span");
  span.className = "work-lost";
  span.textContent = `${prefix}${gpuMinutes(lost)}`;
  span.title = `Work lost if stopped now: ${lost.basis}` +
    ` (${Math.round(lost.gpu_seconds)} GPU-seconds: ${seconds(lost.lost_seconds)} of work lost,` +
    ` the stop holds the GPUs ${seconds(lost.stop_seconds)})`;
  return span;
}

function bar(progress) {
  if (progress.percent === null || progress.percent === undefined) {
    const step = document.createElement("span");
    step.className = "step";
    step.textContent = `step ${progress.step}`;
    return step;
  }
  const meter = document.createElement("progress");
  meter.max = 100;
  meter.value = progress.percent;
  meter.textContent = `${progress.percent}%`;
  meter.title = `${progress.percent}% (step ${progress.step} of ${progress.total_steps})`;
  return meter;
}

// The list's cell: the bar and the sparkline, and under them the checkpoint's age and
// the work lost (empty for a job that reports nothing and is not running).
export function progressCell(job) {
  const td = document.createElement("td");
  td.className = "progress";
  const top = document.createElement("span");
  top.className = "progress-line";
  if (job.progress) {
    top.append(bar(job.progress));
    const spark = sparkline(job.progress.losses, 40, 14);
    if (spark) top.append(spark);
  }
  const under = document.createElement("span");
  under.className = "progress-notes";
  if (job.checkpoint) under.append(aged(job.checkpoint, "ckpt "));
  if (job.work_lost_if_stopped) {
    if (job.checkpoint) under.append(" · ");
    under.append(workLost(job.work_lost_if_stopped, ""));
  }
  td.append(top, under);
  return td;
}

// The detail view's fields: [label, element or null].
export function progressFields(job) {
  const p = job.progress;
  let line = null;
  if (p) {
    line = document.createElement("span");
    line.className = "progress-line";
    line.append(bar(p));
    const facts = [p.total_steps ? `${p.step} / ${p.total_steps}` : null,
      p.throughput !== null && p.throughput !== undefined ? `${number(p.throughput)} steps/s` : null];
    line.append(` ${facts.filter(Boolean).join(" · ")}`);
  }
  let loss = null;
  if (p && p.loss !== null && p.loss !== undefined) {
    loss = document.createElement("span");
    loss.className = "progress-line";
    loss.append(number(p.loss));
    const spark = sparkline(p.losses, 120, 28);
    if (spark) loss.append(" ", spark);
  }
  let checkpoint = null;
  if (job.checkpoint) {
    const c = job.checkpoint;
    checkpoint = document.createElement("span");
    checkpoint.append(`step ${c.step}, `, aged(c, ""), " ago");
    if (c.write_seconds) checkpoint.append(` (written in ${number(c.write_seconds)}s)`);
  }
  return [
    ["Progress", line],
    ["Loss", loss],
    ["Last checkpoint", checkpoint],
    ["Work lost if stopped now", job.work_lost_if_stopped && judged(job.work_lost_if_stopped)],
  ];
}

function judged(lost) {
  const span = document.createElement("span");
  const basis = document.createElement("small");
  basis.className = "basis";
  basis.textContent = ` (${lost.basis})`;
  span.append(workLost(lost, ""), basis);
  return span;
}

// Called by the page's ticker: every checkpoint age shown moves on.
export function tickAges(root) {
  for (const span of root.querySelectorAll(".ckpt-age")) {
    span.textContent = `${span.dataset.prefix}${checkpointAge(span)}`;
  }
}
