// Three small SVG charts, drawn by our own code (no library: three chart shapes do not
// justify a dependency, and the CSP allows only our own scripts). Every series is
// labelled where it is drawn, so nothing needs a legend; exact values are in each
// shape's tooltip (<title>). Charts are drawn at the container's pixel width, so text
// keeps its size at any width.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
// Distinct in hue and lightness, readable as text on white.
export const PALETTE = ["#2f6fb0", "#c2571a", "#2d8a4e", "#8a3fa0", "#b0305a", "#5b6475",
                        "#8a6d00", "#1f8a8a"];

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function titled(node, text) {
  node.append(el("title", {}, text));
  return node;
}

function svg(width, height, label) {
  return el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                     "aria-label": label, class: "chart" });
}

// A round axis maximum and its ticks: 1, 2 or 5 times a power of ten.
function niceTicks(max, count = 4) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let v = 0; v <= max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(6)));
  return ticks;
}

// The width labels need, measured in the charts' font (bold: the widest of them),
// plus a margin, capped at a share of the chart.
const measure = document.createElement("canvas").getContext("2d");
function textWidth(texts, cap) {
  const family = getComputedStyle(document.body).fontFamily || "sans-serif";
  measure.font = `600 12px ${family}`;
  const widest = Math.max(0, ...texts.map((t) => measure.measureText(String(t)).width));
  return Math.min(cap, Math.ceil(widest) + 18);
}

export const fmt = (v, digits = 1) => (v >= 100 ? Math.round(v).toString() : v.toFixed(digits));

// Labels at the right of a chart, each at its wanted y, pushed apart to `gap`.
function spread(wanted, gap, top, bottom) {
  const order = wanted.map((y, i) => ({ y, i })).sort((a, b) => a.y - b.y);
  for (let k = 0; k < order.length; k++) {
    order[k].y = Math.max(order[k].y, k ? order[k - 1].y + gap : top);
  }
  for (let k = order.length - 1; k >= 0; k--) {
    order[k].y = Math.min(order[k].y, k < order.length - 1 ? order[k + 1].y - gap : bottom);
  }
  const placed = [];
  for (const { y, i } of order) placed[i] = y;
  return placed;
}

// Stacked bars: one bar per bucket, one colour per series, each series named at the
// right beside its part of the last bar, with its total.
export function stackedBars(container, { buckets, series, unit, bucketLabel }) {
  const width = Math.max(320, container.clientWidth);
  const labelWidth = textWidth(series.map((s) => `${s.name} ${fmt(s.total)}`), width * 0.4);
  const height = Math.max(220, series.length * 16 + 60);
  const left = 44, top = 12, bottom = height - 28, right = width - labelWidth;
  const chart = svg(width, height, `${unit} per ${bucketLabel}, stacked`);
  const totals = buckets.map((_, b) => series.reduce((sum, s) => sum + s.values[b], 0));
  const ticks = niceTicks(Math.max(...totals, 0));
  const max = ticks[ticks.length - 1];
  const y = (v) => bottom - (v / max) * (bottom - top);
  for (const t of ticks) {
    chart.append(el("line", { x1: left, x2: right, y1: y(t), y2: y(t), class: "grid" }));
    chart.append(el("text", { x: left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, t === 0 ? "0" : fmt(t, t < 10 ? 1 : 0)));
  }
  const slot = (right - left) / Math.max(1, buckets.length);
  const barWidth = Math.max(2, slot * 0.7);
  const every = Math.ceil(buckets.length / Math.max(1, Math.floor((right - left) / 56)));
  buckets.forEach((bucket, b) => {
    const x = left + b * slot + (slot - barWidth) / 2;
    let base = 0;
    series.forEach((s, i) => {
      const v = s.values[b];
      if (v > 0) {
        const rect = el("rect", { x, y: y(base + v), width: barWidth, height: y(base) - y(base + v),
                                  fill: PALETTE[i % PALETTE.length], "data-series": s.name });
        chart.append(titled(rect, `${s.name}, ${bucket.label}: ${fmt(v, 2)} ${unit}`));
      }
      base += v;
    });
    if (b % every === 0) {
      chart.append(el("text", { x: left + b * slot + slot / 2, y: bottom + 16, class: "tick",
                                "text-anchor": "middle" }, bucket.short));
    }
  });
  // Each series named beside the last bar that has anything, at its own segment.
  let last = totals.length - 1;
  while (last > 0 && totals[last] === 0) last--;
  const wanted = [];
  let base = 0;
  series.forEach((s) => {
    const v = s.values[last] || 0;
    wanted.push(y(base + v / 2));
    base += v;
  });
  const placed = spread(wanted, 15, top + 6, bottom);
  const edge = left + last * slot + (slot + barWidth) / 2;
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    chart.append(el("line", { x1: edge + 2, x2: right + 6, y1: wanted[i], y2: placed[i] - 4,
                              stroke: colour, class: "leader" }));
    const label = el("text", { x: right + 10, y: placed[i], fill: colour, class: "series-label",
                               "data-series": s.name }, `${s.name} ${fmt(s.total)}`);
    const group = el("g");
    group.append(label);
    chart.append(titled(group, `${s.name}: ${fmt(s.total, 2)} ${unit} in the window`));
  });
  container.replaceChildren(chart);
}

// Small multiples: one row per queue, its waits as a histogram over the same buckets
// (the column heads name them), its median and 90th percentile at the right.
export function histogramRows(container, { rows, bins }) {
  const width = Math.max(320, container.clientWidth);
  const nameWidth = textWidth(rows.map((r) => r.name), width * 0.3);
  const statWidth = textWidth(rows.map((r) => r.stat), width * 0.4);
  const rowHeight = 30, top = 22;
  const height = top + rows.length * rowHeight + 6;
  const chart = svg(width, height, "Wait time distribution per queue");
  const left = nameWidth, right = width - statWidth;
  const cell = (right - left) / bins.length;
  const skip = cell < 44 ? 2 : 1;  // every other head when they would touch
  bins.forEach((bin, k) => {
    if (k % skip) return;
    chart.append(el("text", { x: left + k * cell + cell / 2, y: 14, class: "tick",
                              "text-anchor": "middle" }, bin));
  });
  rows.forEach((row, r) => {
    const y0 = top + r * rowHeight;
    const colour = row.colour || PALETTE[r % PALETTE.length];
    const peak = Math.max(...row.counts, 1);
    chart.append(el("text", { x: nameWidth - 8, y: y0 + 19, "text-anchor": "end", fill: colour,
                              class: "series-label", "data-series": row.name }, row.name));
    chart.append(el("line", { x1: left, x2: right, y1: y0 + rowHeight - 4, y2: y0 + rowHeight - 4,
                              class: "grid" }));
    row.counts.forEach((count, k) => {
      if (!count) return;
      const h = ((rowHeight - 8) * count) / peak;
      const rect = el("rect", { x: left + k * cell + cell * 0.1, y: y0 + rowHeight - 4 - h,
                                width: cell * 0.8, height: h, fill: colour });
      chart.append(titled(rect, `${row.name}: ${count} run${count === 1 ? "" : "s"} waited ${bins[k]}`));
    });
    chart.append(el("text", { x: right + 8, y: y0 + 19, class: "stat" }, row.stat));
  });
  container.replaceChildren(chart);
}

// One bar per queue: its part of its cohort's GPU-hours, with a tick at the part its
// weight entitles it to; both named in the text beside it.
export function shareBars(container, { rows }) {
  const width = Math.max(320, container.clientWidth);
  const nameWidth = textWidth(rows.map((r) => r.name), width * 0.3);
  const statWidth = textWidth(rows.map((r) => r.text), width * 0.4);
  const rowHeight = 28, top = 20;
  const height = top + rows.length * rowHeight + 4;
  const chart = svg(width, height, "Each queue's share against its weight");
  const left = nameWidth, right = width - statWidth;
  const x = (f) => left + Math.min(1, Math.max(0, f)) * (right - left);
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(el("line", { x1: x(f), x2: x(f), y1: top - 4, y2: height - 4, class: "grid" }));
    chart.append(el("text", { x: x(f), y: 12, class: "tick", "text-anchor": "middle" }, `${f * 100}%`));
  }
  rows.forEach((row, r) => {
    const y0 = top + r * rowHeight;
    const colour = row.colour || PALETTE[r % PALETTE.length];
    chart.append(el("text", { x: nameWidth - 8, y: y0 + 17, "text-anchor": "end", fill: colour,
                              class: "series-label", "data-series": row.name }, row.name));
    if (row.share !== null) {
      const bar = el("rect", { x: left, y: y0 + 6, width: x(row.share) - left, height: 14, fill: colour,
                               class: "share" });
      chart.append(titled(bar, `${row.name}: ${row.shareText}`));
    }
    const tick = el("line", { x1: x(row.weight), x2: x(row.weight), y1: y0 + 2, y2: y0 + 24,
                              class: "weight" });
    chart.append(titled(tick, `${row.name}: weight ${row.weightText}`));
    chart.append(el("text", { x: right + 8, y: y0 + 17, class: "stat" }, row.text));
  });
  container.replaceChildren(chart);
}
