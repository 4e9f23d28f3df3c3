"use strict";
// Small SVG plots, drawn by the page itself (nothing is loaded from elsewhere): a line chart
// with axes, ticks, axis titles and a legend; parallel coordinates; a scatter plot.  Each
// returns an <svg> laid out for the pixel width it is given (a phone's narrow screen gets
// readable text, not a shrunken picture).  Colours are Okabe and Ito's palette, which stays
// distinct with the common colour-vision deficiencies; the series also differ by dash, and
// every mark has a <title> that says what it is.

const Plot = (() => {
  const NS = "http://www.w3.org/2000/svg";
  // Okabe-Ito: blue, orange, bluish green, reddish purple, sky blue, vermillion, black, yellow
  // (vermillion after sky blue: it is orange's nearest; yellow last: it is faint on white)
  const COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
  const DASHES = ["", "6 3", "2 3", "8 3 2 3"];
  const CHAR = 6.6;  // a 12 px label's mean character width, for laying labels out

  function el(tag, attrs = {}, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const tooltip = (text) => el("title", {}, text);

  // ---------------------------------------------------------------- scales
  // A scale maps a value to [0, 1] along its axis and names its ticks.
  function tickLabel(value, decimals) {
    const size = Math.abs(value);
    if (size !== 0 && (size >= 1e5 || size < 1e-4)) return value.toExponential(1).replace("e+", "e");
    return value.toFixed(Math.min(decimals, 8));
  }

  // Ticks 1, 2 or 5 × 10^k apart, about `count` of them, over a domain widened to the ticks
  // at its ends (so the first and last tick sit on the plot's edges)
  function linearScale(values, {count = 5, integer = false} = {}) {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
    if (!(hi > lo)) { const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1; lo -= pad; hi += pad; }
    const raw = (hi - lo) / count, magnitude = 10 ** Math.floor(Math.log10(raw)), f = raw / magnitude;
    let step = magnitude * (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10);
    if (integer) step = Math.max(1, Math.round(step));
    const first = Math.floor(lo / step + 1e-9), last = Math.ceil(hi / step - 1e-9);
    const ticks = [];
    for (let i = first; i <= last; i++) ticks.push(i * step);
    const low = first * step, high = last * step;
    const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return {kind: "linear", ticks, label: (v) => tickLabel(v, decimals), at: (v) => (v - low) / (high - low)};
  }

  // Powers of ten over the values' decades (with 2 and 5 between them when they span few)
  function logScale(values) {
    const low = Math.floor(Math.log10(Math.min(...values)) + 1e-9);
    let high = Math.ceil(Math.log10(Math.max(...values)) - 1e-9);
    if (high === low) high += 1;
    const ticks = [];
    for (let k = low; k <= high; k++) {
      for (const m of (high - low <= 2 ? [1, 2, 5] : [1])) {
        const v = m * 10 ** k;
        if (v <= 10 ** high * 1.0001) ticks.push(v);
      }
    }
    const label = (v) => (v >= 1e-3 && v < 1e5 ? String(Number(v.toPrecision(1))) : v.toExponential(0).replace("e+", "e"));
    return {kind: "log", ticks, label, at: (v) => (Math.log10(v) - low) / (high - low)};
  }

  // Values that are not all numbers (an activation's name, a list of hidden sizes): each
  // distinct value a place, numbers and lists in their natural order
  function categoryScale(values) {
    const distinct = new Map();
    for (const v of values) distinct.set(JSON.stringify(v), v);
    const keys = [...distinct.keys()].sort((a, b) => compareValues(distinct.get(a), distinct.get(b)));
    const place = new Map(keys.map((key, i) => [key, keys.length === 1 ? 0.5 : i / (keys.length - 1)]));
    const ticks = keys.map((key) => distinct.get(key));
    const label = (v) => (typeof v === "string" ? v : typeof v === "number" ? String(Number(v.toPrecision(4))) : JSON.stringify(v));
    return {kind: "category", ticks, label, at: (v) => place.get(JSON.stringify(v))};
  }

  // The scale a set of values calls for: log for positive numbers over two decades or more
  // (learning rates, weight decay), linear for other numbers, categories for the rest
  function scaleFor(values, options = {}) {
    const present = values.filter((v) => v !== null && v !== undefined);
    if (present.length === 0) return linearScale([0, 1], options);
    if (present.every((v) => typeof v === "number" && Number.isFinite(v))) {
      const positive = present.every((v) => v > 0);
      if (options.log !== false && positive && Math.max(...present) / Math.min(...present) >= 100) return logScale(present);
      return linearScale(present, options);
    }
    return categoryScale(present);
  }

  // Sorts values of mixed kinds: missing last, numbers, then text, then lists (element-wise)
  function compareValues(a, b) {
    const rank = (v) => (v === null || v === undefined ? 3 : typeof v === "number" ? 0 : typeof v === "string" ? 1 : 2);
    if (rank(a) !== rank(b)) return rank(a) - rank(b);
    if (typeof a === "number") return a - b;
    if (typeof a === "string") return a.localeCompare(b);
    if (Array.isArray(a) && Array.isArray(b)) {
      for (let i = 0; i < Math.min(a.length, b.length); i++) {
        const c = compareValues(a[i], b[i]);
        if (c !== 0) return c;
      }
      return a.length - b.length;
    }
    return JSON.stringify(a ?? null).localeCompare(JSON.stringify(b ?? null));
  }

  // ---------------------------------------------------------------- shared parts
  // The legend's items laid out in rows across the width: [{x, y, text, color, dash}], rows
  function legendLayout(items, width) {
    const placed = [];
    let x = 0, row = 0;
    for (const item of items) {
      const need = 26 + item.name.length * CHAR + 16;
      if (x > 0 && x + need > width) { x = 0; row += 1; }
      placed.push({...item, x, y: row * 18});
      x += need;
    }
    return {placed, rows: items.length ? row + 1 : 0};
  }

  function legend(items, left, top) {
    return el("g", {class: "legend", transform: `translate(${left},${top})`},
      items.map((item) => el("g", {class: "legend-item", transform: `translate(${item.x},${item.y})`},
        el("line", {x1: 0, x2: 20, y1: 6, y2: 6, stroke: item.color, "stroke-width": item.width || 2.5,
                    "stroke-dasharray": item.dash || null}),
        el("text", {x: 26, y: 10}, item.name))));
  }

  // An axis along the bottom (x) or the left (y) of the box, with ticks, grid lines and a title
  function axis(which, scale, box, titleText) {
    const g = el("g", {class: `axis ${which}-axis`});
    const {left, top, width, height} = box;
    for (const value of scale.ticks) {
      const p = scale.at(value);
      if (!(p >= -1e-9 && p <= 1 + 1e-9)) continue;
      const text = scale.label(value);
      if (which === "x") {
        const x = left + p * width;
        g.append(el("g", {class: "tick"},
          el("line", {class: "grid", x1: x, x2: x, y1: top, y2: top + height}),
          el("line", {x1: x, x2: x, y1: top + height, y2: top + height + 5}),
          el("text", {x, y: top + height + 18, "text-anchor": "middle"}, text)));
      } else {
        const y = top + height - p * height;
        g.append(el("g", {class: "tick"},
          el("line", {class: "grid", x1: left, x2: left + width, y1: y, y2: y}),
          el("line", {x1: left - 5, x2: left, y1: y, y2: y}),
          el("text", {x: left - 8, y: y + 4, "text-anchor": "end"}, text)));
      }
    }
    if (which === "x") {
      g.append(el("line", {class: "domain", x1: left, x2: left + width, y1: top + height, y2: top + height}),
               el("text", {class: "axis-title", x: left + width / 2, y: top + height + 36, "text-anchor": "middle"}, titleText));
    } else {
      g.append(el("line", {class: "domain", x1: left, x2: left, y1: top, y2: top + height}),
               el("text", {class: "axis-title", "text-anchor": "middle",
                           transform: `translate(${left - 48},${top + height / 2}) rotate(-90)`}, titleText));
    }
    return g;
  }

  // ---------------------------------------------------------------- line chart
  // series: [{name, points: [[x, y], ...]}]; y values that are null or not finite break the line
  function lineChart({width = 640, height = 260, series, xLabel, yLabel, empty = "no data yet", label}) {
    width = Math.max(260, width);
    const items = series.map((s, i) => ({name: s.name, color: s.color || COLORS[i % COLORS.length],
                                         dash: s.dash ?? DASHES[i % DASHES.length], width: s.width}));
    const margin = {left: 64, right: 16, bottom: 46};
    const {placed, rows} = legendLayout(items, width - margin.left - margin.right);
    margin.top = 10 + rows * 18 + (rows ? 6 : 0);
    const box = {left: margin.left, top: margin.top, width: width - margin.left - margin.right,
                 height: height - margin.top - margin.bottom};
    const finite = (p) => p[1] !== null && p[1] !== undefined && Number.isFinite(p[1]);
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    const ys = series.flatMap((s) => s.points.filter(finite).map((p) => p[1]));
    const xScale = linearScale(xs.length ? xs : [0, 1], {count: Math.max(2, Math.floor(box.width / 80)), integer: true});
    const yScale = linearScale(ys.length ? ys : [0, 1], {count: Math.max(2, Math.floor(box.height / 45))});
    const X = (v) => box.left + xScale.at(v) * box.width, Y = (v) => box.top + box.height - yScale.at(v) * box.height;
    const svg = el("svg", {class: "chart line-chart", width, height, viewBox: `0 0 ${width} ${height}`,
                           role: "img", "aria-label": label || `${yLabel} against ${xLabel}`});
    svg.append(axis("x", xScale, box, xLabel), axis("y", yScale, box, yLabel));
    series.forEach((s, i) => {
      let d = "", pen = "M";
      for (const p of s.points) {
        if (!finite(p)) { pen = "M"; continue; }
        d += `${pen}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`;
        pen = "L";
      }
      const item = items[i];
      const g = el("g", {class: "series", "data-name": s.name},
        tooltip(s.name),
        el("path", {d, fill: "none", stroke: item.color, "stroke-width": item.width || 2,
                    "stroke-dasharray": item.dash || null, "data-n": s.points.length}));
      // points as dots while they are few, and always the last one (a single epoch shows)
      const points = s.points.filter(finite);
      const dots = points.length <= 40 ? points : points.slice(-1);
      for (const p of dots) {
        g.append(el("circle", {cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.5, fill: item.color},
                    tooltip(`${s.name}: ${xLabel} ${p[0]}, ${fmtNumber(p[1])}`)));
      }
      svg.append(g);
    });
    if (!ys.length) {
      svg.append(el("text", {class: "empty", x: box.left + box.width / 2, y: box.top + box.height / 2,
                             "text-anchor": "middle"}, empty));
    }
    if (items.length) svg.append(legend(placed, margin.left, 10));
    return svg;
  }

  // ---------------------------------------------------------------- parallel coordinates
  // axes: [{name, title, values}] (values[k]: line k's value on that axis, null if it has
  // none); lines: [{kind: "best" | "pruned" | "", title}].  A line is drawn through the axes
  // in order up to its first missing value: a pruned trial without the metric stops at the
  // last hyperparameter.
  function parallelCoordinates({width = 640, height = 300, axes, lines}) {
    width = Math.max(260, width);
    const margin = {left: 56, right: 56, top: 34, bottom: 16};
    const box = {left: margin.left, top: margin.top, width: width - margin.left - margin.right,
                 height: height - margin.top - margin.bottom};
    const gap = axes.length > 1 ? box.width / (axes.length - 1) : 0;
    // (an axis of categories keeps its places off the ends, where the numbers' extremes are)
    const scales = axes.map((a) => inset(scaleFor(a.values)));
    const svg = el("svg", {class: "chart parallel", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                           "aria-label": "parallel coordinates: " + axes.map((a) => a.title || a.name).join(", ")});
    const Y = (p) => box.top + box.height - p * box.height;
    const order = lines.map((line, k) => k).sort((a, b) => rank(lines[a].kind) - rank(lines[b].kind));
    for (const k of order) {  // (faint ones under, the best on top)
      let d = "";
      for (let i = 0; i < axes.length; i++) {
        const v = axes[i].values[k];
        if (v === null || v === undefined) break;
        d += `${i ? "L" : "M"}${(box.left + i * gap).toFixed(1)},${Y(scales[i].at(v)).toFixed(1)}`;
      }
      if (!d) continue;
      const kind = lines[k].kind || "trial";
      svg.append(el("path", {class: `line ${kind}`, d, fill: "none"}, tooltip(lines[k].title)));
    }
    axes.forEach((a, i) => {
      const x = box.left + i * gap, scale = scales[i];
      const g = el("g", {class: "axis pc-axis"}, el("line", {class: "domain", x1: x, x2: x, y1: box.top, y2: box.top + box.height}));
      const shown = scale.kind === "category" && scale.ticks.length > 12 ? scale.ticks.filter((t, j) => j % Math.ceil(scale.ticks.length / 12) === 0) : scale.ticks;
      for (const value of shown) {
        const p = scale.at(value);
        if (!(p >= -1e-9 && p <= 1 + 1e-9)) continue;
        const y = Y(p), right = i === axes.length - 1;
        g.append(el("g", {class: "tick"}, el("line", {x1: x - 4, x2: x + 4, y1: y, y2: y}),
          el("text", {class: "halo", x: right ? x + 7 : x - 7, y: y + 4, "text-anchor": right ? "start" : "end"}, scale.label(value))));
      }
      const name = a.title || a.name;
      g.append(el("g", {}, tooltip(a.name),  // (the whole name on hover; a long one is cut on the plot)
        el("text", {class: "axis-title", x, y: 14, "text-anchor": i === 0 ? "start" : i === axes.length - 1 ? "end" : "middle"},
           name.length > 18 ? name.slice(0, 17) + "…" : name)));
      svg.append(g);
    });
    return svg;
  }

  // Categories sit inside the box (a place each), not on its edges
  function inset(scale) {
    return scale.kind === "category" ? {...scale, at: (v) => 0.08 + 0.84 * scale.at(v)} : scale;
  }

  function rank(kind) { return kind === "pruned" ? 0 : kind === "best" ? 2 : 1; }

  // ---------------------------------------------------------------- scatter plot
  // points: [{x, y, kind: "best" | "pruned" | "", title}]; x may be numbers or categories
  function scatter({width = 300, height = 220, points, xLabel, yLabel}) {
    width = Math.max(220, width);
    const box = {left: 64, top: 10, width: width - 64 - 14, height: height - 10 - 46};
    const shown = points.filter((p) => p.x !== null && p.x !== undefined && p.y !== null && p.y !== undefined);
    const xScale = scaleFor(shown.map((p) => p.x), {count: Math.max(2, Math.floor(box.width / 70))});
    const yScale = linearScale(shown.length ? shown.map((p) => p.y) : [0, 1], {count: 4});
    const svg = el("svg", {class: "chart scatter", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                           "aria-label": `${yLabel} against ${xLabel}`});
    const xs = inset(xScale);
    svg.append(axis("x", xs, box, xLabel), axis("y", yScale, box, yLabel));
    for (const p of [...shown].sort((a, b) => rank(a.kind) - rank(b.kind))) {
      svg.append(el("circle", {class: `dot ${p.kind || "trial"}`, cx: (box.left + xs.at(p.x) * box.width).toFixed(1),
                               cy: (box.top + box.height - yScale.at(p.y) * box.height).toFixed(1),
                               r: p.kind === "best" ? 6 : 4}, tooltip(p.title)));
    }
    return svg;
  }

  return {COLORS, DASHES, el, lineChart, parallelCoordinates, scatter, compareValues, scaleFor};
})();
