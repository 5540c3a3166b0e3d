// charts.js: the small SVG bar charts over the activity buckets (built with
// createElementNS; colours come from classes in console.css, never inline styles).

import { svg } from './dom.js';
import { localClock } from './format.js';

const WIDTH = 240;
const HEIGHT = 48;
const GAP = 1;

/// A chart element to fill with drawBars; cls is chart-throughput or chart-failures.
export function chart(cls) {
  return svg('svg', {
    class: `chart ${cls}`,
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    width: WIDTH,
    height: HEIGHT,
    preserveAspectRatio: 'none',
    role: 'img',
  });
}

/// Draws one bar per bucket. series: [{key, cls, label}] stacked bottom-up.
/// title: the accessible summary; bucketSeconds: the width of a bucket.
export function drawBars(node, buckets, series, title, bucketSeconds) {
  const list = Array.isArray(buckets) ? buckets : [];
  const slots = Math.max(list.length, 30);
  const slot = WIDTH / slots;
  const barWidth = Math.max(slot - GAP, 1);
  let max = 0;
  for (const b of list) {
    const total = series.reduce((sum, s) => sum + (Number(b[s.key]) || 0), 0);
    if (total > max) max = total;
  }
  const scale = max > 0 ? (HEIGHT - 2) / max : 0;
  const children = [svg('title', null, `${title}, ${bucketSeconds || '?'} s buckets, peak ${max}`)];
  children.push(svg('line', { class: 'chart-axis', x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5 }));
  const offset = slots - list.length; // right-align: the newest bucket sits at the right edge
  list.forEach((bucket, i) => {
    const x = (offset + i) * slot;
    let y = HEIGHT;
    const parts = [];
    const values = [];
    for (const s of series) {
      const value = Number(bucket[s.key]) || 0;
      values.push(`${value} ${s.label}`);
      if (value <= 0) continue;
      const h = Math.max(value * scale, 1);
      y -= h;
      parts.push(svg('rect', { class: s.cls, x: x.toFixed(2), y: y.toFixed(2), width: barWidth.toFixed(2), height: h.toFixed(2) }));
    }
    // An invisible full-height target carries the tooltip for the bucket.
    const hit = svg('rect', { class: 'chart-hit', x: x.toFixed(2), y: 0, width: slot.toFixed(2), height: HEIGHT });
    hit.append(svg('title', null, `${localClock(bucket.at)}: ${values.join(', ')}`));
    children.push(svg('g', null, parts, hit));
  });
  node.replaceChildren(...children);
  node.setAttribute('aria-label', `${title}, peak ${max}`);
}
