/* jaxmamba attention explorer: one front end, three data sources.
 *
 *   JM.mount(element, JM.httpSource("api"))        the local server (jaxmamba serve)
 *   JM.mount(element, JM.embeddedSource(data))     the offline single file (jaxmamba export)
 *   JM.mount(element, JM.widgetSource(model))      the notebook widget (jaxmamba.show)
 *
 * A source answers meta(), coords(order, block, method), routes(order, block),
 * heat(order, block, route, direction, patches) and imageUrl(i); the app asks only for what it
 * draws: the coordinates of a block and the mean row (or column) of the selection.
 */
"use strict";
const JM = (() => {
  // ------------------------------------------------------------------ colour maps
  const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  const INFERNO = [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
    [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]];
  // diverging, centred at zero: blue (negative) - white (0) - red (positive) (ColorBrewer RdBu)
  const RDBU = [[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
    [247, 247, 247], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]];
  function lerp(stops, t) {
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    const x = t * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
    const a = stops[i], b = stops[i + 1];
    return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
  }
  const css = (c, a) => a === undefined ? `rgb(${c[0] | 0},${c[1] | 0},${c[2] | 0})`
    : `rgba(${c[0] | 0},${c[1] | 0},${c[2] | 0},${a.toFixed(3)})`;

  /** Numbers for reading: 0, 0.123, 12.3, 2.4e-5, 1.2e+4. */
  function fmt(v) {
    if (!isFinite(v)) return String(v);
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(1).replace(/\.0e/, "e");
    return String(Number(v.toPrecision(3)));
  }

  /** A colour scale for values: diverging around 0 for signed maps, sequential otherwise. */
  function scaleFor(values, signed, skip) {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < values.length; i++) {
      if (skip && skip.has(i)) continue;
      const v = values[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!(hi >= lo)) { lo = 0; hi = 1; }
    if (signed || lo < 0) {
      const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
      return { kind: "diverging", lo: -m, hi: m, dataLo: lo, dataHi: hi,
        t: (v) => 0.5 + 0.5 * v / m, stops: RDBU, alpha: (v) => Math.min(1, Math.abs(v) / m) };
    }
    const top = hi > lo ? hi : lo + 1, base = Math.min(lo, 0) === 0 && lo >= 0 ? 0 : lo;
    const bottom = lo >= 0 && lo / top < 0.05 ? 0 : lo;  // include 0 when it is close
    return { kind: "sequential", lo: bottom, hi: top, dataLo: lo, dataHi: hi, base,
      t: (v) => (v - bottom) / (top - bottom), stops: INFERNO,
      alpha: (v) => Math.min(1, Math.max(0, (v - bottom) / (top - bottom))) };
  }

  // ------------------------------------------------------------------ data sources
  function decodeB64(s) {
    const bin = atob(s), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  let HALF = null;
  function halfTable() {
    if (HALF) return HALF;
    HALF = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
      HALF[h] = e === 0 ? s * m * Math.pow(2, -24) : e === 31 ? (m ? NaN : s * Infinity)
        : s * (1 + m / 1024) * Math.pow(2, e - 15);
    }
    return HALF;
  }
  /** Decode an encoded matrix of the offline file (uint8 per row, float16 or float32). */
  function decodeMatrix(enc) {
    const n = enc.shape[0], f = enc.shape[1], raw = decodeB64(enc.data);
    if (enc.dtype === "float32") return new Float32Array(raw.buffer);
    const out = new Float32Array(n * f);
    if (enc.dtype === "float16") {
      const hv = new Uint16Array(raw.buffer), T = halfTable();
      for (let i = 0; i < n * f; i++) out[i] = T[hv[i]];
      return out;
    }
    const lo = new Float32Array(decodeB64(enc.lo).buffer), st = new Float32Array(decodeB64(enc.step).buffer);
    for (let r = 0; r < n; r++) {
      const a = lo[r], b = st[r], o = r * f;
      for (let c = 0; c < f; c++) out[o + c] = a + raw[o + c] * b;
    }
    return out;
  }
  function meanRows(M, n, patches, direction) {
    const v = new Float32Array(n);
    for (const p of patches) {
      if (direction === "query") { const o = p * n; for (let q = 0; q < n; q++) v[q] += M[o + q]; }
      else for (let q = 0; q < n; q++) v[q] += M[q * n + p];
    }
    for (let q = 0; q < n; q++) v[q] /= patches.length;
    return v;
  }

  /** How long a request may take before the page shows an error instead of waiting: a single
   *  image's map is computed on demand (seconds; longer on the first, compiling, request). */
  const REQUEST_TIMEOUT_MS = 120000;
  const timeoutError = (ms) => new Error(`no answer within ${ms / 1000} s; try again`);

  /** The local server: GET/POST /api/<method> on the page's own origin (relative URLs), each
   *  request given up after timeoutMs. */
  function httpSource(base, timeoutMs = REQUEST_TIMEOUT_MS) {
    const query = (args) => new URLSearchParams(Object.entries(args).filter(([, v]) => v !== undefined && v !== null));
    const endpoint = (m, args) => base + "/" + m + (args ? "?" + query(args) : "");  // no "undefined" arguments
    async function check(r) {
      if (!r.ok) { let msg = r.statusText; try { msg = (await r.json()).error; } catch (e) { /* text */ } throw new Error(msg); }
      return r;
    }
    /** fetch, checked, and its body read, within timeoutMs (an error after it). */
    async function request(url, read, init = {}) {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), timeoutMs);
      try {
        return await read(await check(await fetch(url, { ...init, credentials: "same-origin", signal: ctl.signal })));
      } catch (e) {
        throw ctl.signal.aborted ? timeoutError(timeoutMs) : e;
      } finally { clearTimeout(timer); }
    }
    const floats = async (r) => new Float32Array(await r.arrayBuffer());
    return {
      kind: "http",
      meta: () => request(endpoint("meta"), (r) => r.json()),
      coords: (order, block, method, subject) => request(endpoint("coords", { order, block, method, subject }), floats),
      routes: (order, block) => request(endpoint("routes", { order, block }), async (r) => new Int32Array(await r.arrayBuffer())),
      points: (kind, order, stage, method) => request(endpoint("points", { kind, order, stage, method }), floats),
      heat: (order, block, route, direction, patches, subject) =>
        request(endpoint("heat"), floats, { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ order, block, route, direction, patches, subject }) }),
      imageUrl: (i) => endpoint("image", { index: i }),
    };
  }

  /** The offline file: every map of a small subset embedded (encoded) in the page. */
  function embeddedSource(D) {
    const cache = new Map();
    const entry = (order, block) => {
      const e = D.data[order] && D.data[order][block];
      if (!e) throw new Error("no data for " + order + " / " + block);
      return e;
    };
    const matrix = (order, block, route) => {
      const key = order + "|" + block + "|" + route;
      if (!cache.has(key)) {
        const e = entry(order, block);
        cache.set(key, decodeMatrix(route === "sum" ? e.attn : e.route_attn[+route]));
      }
      return cache.get(key);
    };
    const names = Object.keys(D.data);
    const blocks = new Map();
    for (const o of names) for (const [b, e] of Object.entries(D.data[o]))
      if (!blocks.has(b)) blocks.set(b, { name: b, stage: e.stage, index: e.index === undefined ? null : e.index, grid: [e.h, e.w] });
    const meta = {
      title: D.title, count: D.count === undefined ? null : D.count, signed: D.signed === undefined ? true : D.signed,
      methods: [...new Set(names.flatMap((o) => Object.values(D.data[o]).flatMap((e) => Object.keys(e.coords))))],
      route_maps: names.some((o) => Object.values(D.data[o]).some((e) => !!e.route_attn)),
      orders: names.map((o) => ({ name: o, routes: null, model: (D.models || {})[o] || null,
        model_digest: (D.model_digests || {})[o] || null, blocks: Object.keys(D.data[o]) })),
      blocks: [...blocks.values()],
      images: D.images.map((im) => ({ name: im.name })),
      single_images: [],
      stages: [...new Set([...blocks.values()].map((b) => b.stage))].map((st) => {
        const members = [...blocks.values()].filter((b) => b.stage === st);
        return { stage: st, grid: members[0].grid, blocks: members.map((b) => b.name) };
      }),
      findings: D.findings || {},
      joint: D.joint || {},
    };
    return {
      kind: "embedded",
      meta: async () => meta,
      coords: async (order, block, method) => Float32Array.from(entry(order, block).coords[method].flat()),
      routes: async (order, block) => { const r = entry(order, block).routes; return r ? Int32Array.from(r.flat()) : null; },
      points: async (kind, order, stage, method) => {
        const p = kind === "joint" && D.joint && D.joint[order] && D.joint[order][stage];
        if (!p || !p[method]) throw new Error("this file holds no " + kind + " embedding of stage " + stage);
        return Float32Array.from(p[method].flat());
      },
      heat: async (order, block, route, direction, patches) => {
        const e = entry(order, block);
        return meanRows(matrix(order, block, route), e.h * e.w, patches, direction);
      },
      imageUrl: (i) => D.images[i].src,
      rowSync: (order, block, route, p) => { const e = entry(order, block), n = e.h * e.w; return matrix(order, block, route).slice(p * n, (p + 1) * n); },
    };
  }

  /** The notebook widget (anywidget): requests and answers as widget messages; a request not
   *  answered within timeoutMs is given up with an error. */
  function widgetSource(model, timeoutMs = REQUEST_TIMEOUT_MS) {
    let next = 1;
    const pending = new Map();
    model.on("msg:custom", (msg, buffers) => {
      if (!msg || msg.kind !== "jm-answer" || !pending.has(msg.id)) return;
      const { resolve, reject, timer } = pending.get(msg.id);
      pending.delete(msg.id);
      clearTimeout(timer);
      if (msg.error) { reject(new Error(msg.error)); return; }
      const dv = buffers && buffers[0];
      resolve({ content: msg.content, bytes: dv ? dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength) : null });
    });
    const ask = (method, args) => new Promise((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => { if (pending.delete(id)) reject(timeoutError(timeoutMs)); }, timeoutMs);
      pending.set(id, { resolve, reject, timer });
      model.send({ kind: "jm-request", id, method, args: args || {} });
    });
    const urls = new Map();
    return {
      kind: "widget",
      meta: async () => (await ask("meta")).content,
      coords: async (order, block, method, subject) => new Float32Array((await ask("coords", { order, block, method, subject })).bytes),
      routes: async (order, block) => new Int32Array((await ask("routes", { order, block })).bytes),
      points: async (kind, order, stage, method) => new Float32Array((await ask("points", { kind, order, stage, method })).bytes),
      heat: async (order, block, route, direction, patches, subject) =>
        new Float32Array((await ask("heat", { order, block, route, direction, patches, subject })).bytes),
      imageUrl: (i) => {
        if (!urls.has(i)) urls.set(i, ask("image", { index: i }).then((a) => URL.createObjectURL(new Blob([a.bytes], { type: "image/png" }))));
        return urls.get(i);
      },
    };
  }

  // ------------------------------------------------------------------ the app
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return e;
  }
  function control(label, input, id) { const l = el("label", { id: id + "-ctl" }, label + " ", input); return l; }
  function dropdown(id) { return el("select", { id }); }
  function fill(sel, items, value) {
    sel.innerHTML = "";
    for (const [v, label] of items) sel.appendChild(el("option", { value: String(v), text: label }));
    const ok = items.some(([v]) => String(v) === String(value));
    sel.value = ok ? String(value) : (items.length ? String(items[0][0]) : "");
    return sel.value;
  }

  const TAB10 = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];
  const METHOD_NAMES = { pca: "PCA", tsne: "t-SNE", umap: "UMAP" };
  const MODES = [["patches", "Patches of a block"], ["blocks", "Blocks of a stage"], ["compare", "Side by side"]];

  function mount(root, source) {
    const SIZE = 500, PAD = 14;
    root.classList.add("jm-root");
    root.innerHTML = "";
    const title = el("h1", { text: "jaxmamba attention explorer" });
    const sub = el("div", { class: "jm-sub" });
    const ctl = {
      mode: dropdown("mode"), order: dropdown("order"), stage: dropdown("stage"), block: dropdown("block"),
      subject: dropdown("subject"), route: dropdown("route"), method: dropdown("method"), points: dropdown("points"),
      colorby: dropdown("colorby"), direction: dropdown("direction"), image: dropdown("image"),
      orderB: dropdown("orderB"), blockB: dropdown("blockB"), subjectB: dropdown("subjectB"),
      showpath: el("input", { id: "showpath", type: "checkbox" }), noself: el("input", { id: "noself", type: "checkbox" }),
      reset: el("button", { id: "reset", type: "button", text: "centre patch" }),
    };
    fill(ctl.mode, MODES, "patches");
    fill(ctl.direction, [["query", "what the selection attends to (rows)"], ["source", "what attends to the selection (columns)"]], "query");
    fill(ctl.points, [["interblock", "one point per (image, block) map"], ["joint", "one point per (patch, block), mean maps"]], "interblock");
    const row1 = el("div", { class: "jm-controls" },
      control("view", ctl.mode, "mode"), control("order", ctl.order, "order"), control("stage", ctl.stage, "stage"),
      control("block", ctl.block, "block"), control("map of", ctl.subject, "subject"), control("route", ctl.route, "route"),
      control("embedding", ctl.method, "method"), control("points", ctl.points, "points"), control("colour by", ctl.colorby, "colorby"));
    const row2 = el("div", { class: "jm-controls" },
      control("heat map", ctl.direction, "direction"), control("image under the map", ctl.image, "image"),
      el("label", { id: "path-ctl" }, ctl.showpath, " scan path"), el("label", { id: "noself-ctl" }, ctl.noself, " scale without the selected patches"), ctl.reset);
    const rowB = el("div", { class: "jm-controls", id: "compare-ctl" }, el("b", { text: "right panel:" }),
      control("order", ctl.orderB, "orderB"), control("block", ctl.blockB, "blockB"), control("map of", ctl.subjectB, "subjectB"));
    const scatterCv = el("canvas", { id: "scatter", class: "jm-scatter", width: SIZE, height: SIZE });
    const heatCv = el("canvas", { id: "heat", class: "jm-heat", width: SIZE, height: SIZE, "data-selected": "" });
    const heatCvB = el("canvas", { id: "heatB", class: "jm-heat", width: SIZE, height: SIZE, "data-selected": "" });
    const barCv = el("canvas", { id: "colorbar", width: 260, height: 12 });
    const ticks = el("div", { class: "jm-ticks", id: "ticks" });
    const scatterTitle = el("h2", { id: "scatter-title", text: "Scatterplot" });
    const scatterLegend = el("div", { class: "jm-legend", id: "scatter-legend" });
    const heatTitle = el("h2", { id: "heat-title", text: "Patch view" });
    const heatTitleB = el("h2", { id: "heat-title-b", text: "" });
    const caption = el("div", { class: "jm-caption", id: "caption" });
    const captionB = el("div", { class: "jm-caption", id: "caption-b" });
    const findings = el("div", { class: "jm-findings", id: "findings" });
    const status = el("div", { class: "jm-status", id: "status" });
    const info = el("div", { class: "jm-info", id: "info" });
    const help = el("div", { class: "jm-help", id: "help" });
    const scatterPanel = el("section", { class: "jm-panel", id: "scatter-panel" }, scatterTitle, scatterCv, scatterLegend);
    const heatPanel = el("section", { class: "jm-panel" }, heatTitle, heatCv, el("div", { class: "jm-bar" }, el("div", {}, barCv, ticks)), caption);
    const heatPanelB = el("section", { class: "jm-panel", id: "heat-panel-b" }, heatTitleB, heatCvB, captionB);
    root.append(title, sub, row1, row2, rowB, findings, status,
      el("div", { class: "jm-main" }, scatterPanel, heatPanel, heatPanelB), info, help);
    const sctx = scatterCv.getContext("2d");

    let M = null;  // meta
    const S = { mode: "patches", order: null, block: null, subject: "mean", route: "sum", method: null, points: "interblock",
      colorBy: "row", direction: "query", image: -1, showPath: false, noSelf: false, selection: [], hover: -1,
      B: { order: null, block: null, subject: "mean" }, picked: null, anchor: null };
    // anchor: the selection as last made by hand, with its grid; other grids show its image area
    const blockOf = (name) => M.blocks.find((b) => b.name === name);
    const orderOf = (name) => M.orders.find((o) => o.name === name);
    const stageOf = (st) => M.stages.find((x) => String(x.stage) === String(st));
    const grid = () => blockOf(S.block).grid;
    const L = () => grid()[0] * grid()[1];
    const subjectName = (subj) => subj === "mean" ? `mean of ${M.count} images` : `image “${M.single_images[+subj].name}”`;
    let busy = 0, generation = 0, lastError = null;
    const cache = { coords: new Map(), routes: new Map(), heat: new Map(), points: new Map() };
    const images = new Map();
    let points = null, routes = null, heatA = null, heatB = null, screen = null, scale = null, pointInfo = null;

    async function cached(map, key, make) {
      if (!map.has(key)) {
        const p = make();
        map.set(key, p);
        p.catch(() => map.delete(key));
        if (map.size > 300) map.delete(map.keys().next().value);
      }
      return map.get(key);
    }
    function imageEl(i) {
      if (!images.has(i)) {
        const im = new Image();
        im.onload = () => drawHeats();
        Promise.resolve(source.imageUrl(i)).then((u) => { im.src = u; });
        images.set(i, im);
      }
      return images.get(i);
    }

    // ---------------------------------------------------------------- controls
    function subjects() {
      return [["mean", `mean of ${M.count} images`]].concat(M.single_images.map((s) => [String(s.subject), "image: " + s.name]));
    }
    function syncControls() {
      const modelOf = (o) => o.model_digest || o.model;
      const many = M.orders.some((o) => modelOf(o) !== modelOf(M.orders[0]));
      const orderItems = M.orders.map((o) => [o.name, o.name + (!modelOf(o) ? ""
        : ` · ${many ? "its own model" : "model"} ${o.model_digest ? o.model_digest.slice(0, 8) : o.model}`)]);
      S.mode = fill(ctl.mode, MODES.filter(([m]) => m !== "blocks" || M.stages.some((s) => s.blocks.length > 1)), S.mode);
      S.order = fill(ctl.order, orderItems, S.order);
      const names = orderOf(S.order).blocks;
      if (!names.includes(S.block)) S.block = names[0];
      const stage = fill(ctl.stage, M.stages.filter((s) => S.mode !== "blocks" || s.blocks.length > 1)
        .map((s) => [s.stage, `stage ${s.stage} (${s.grid[0]}×${s.grid[1]}, ${s.blocks.length} block${s.blocks.length > 1 ? "s" : ""})`]), blockOf(S.block).stage);
      const inStage = names.filter((n) => String(blockOf(n).stage) === String(stage));
      if (!inStage.includes(S.block)) S.block = inStage[0];
      S.block = fill(ctl.block, inStage.map((n) => [n, n]), S.block);
      S.subject = fill(ctl.subject, subjects(), S.subject);
      const routeItems = [["sum", "sum of routes"]];
      const k = orderOf(S.order).routes || 4;
      if (M.route_maps || S.subject !== "mean") for (let r = 0; r < k; r++) routeItems.push([String(r), "route " + r]);
      S.route = fill(ctl.route, routeItems, S.route);
      const methodItems = S.mode === "patches" && S.subject !== "mean" ? [["pca", "PCA of this image's rows"]]
        : M.methods.map((m) => [m, METHOD_NAMES[m] || m]);
      S.method = fill(ctl.method, methodItems, S.method);
      S.points = fill(ctl.points, [["interblock", "one point per (image, block) map"], ["joint", "one point per (patch, block), mean maps"]]
        .filter(([p]) => p !== "interblock" || M.single_images.length > 1), S.points);
      S.colorBy = fill(ctl.colorby, [["row", "grid row"], ["col", "grid column"], ["scan", "scan position"]], S.colorBy);
      S.image = +fill(ctl.image, [["-1", "none"]].concat(M.images.map((im, i) => [String(i), im.name])), String(S.image));
      S.B.order = fill(ctl.orderB, orderItems, S.B.order || (M.orders[1] || M.orders[0]).name);
      const namesB = orderOf(S.B.order).blocks;
      S.B.block = fill(ctl.blockB, namesB.map((n) => [n, n]), namesB.includes(S.B.block) ? S.B.block : S.block);
      S.B.subject = fill(ctl.subjectB, subjects(), S.B.subject);
      const show = (id, on) => root.querySelector(id).classList.toggle("hidden", !on);
      show("#order-ctl", M.orders.length > 1 || S.mode !== "patches");
      show("#block-ctl", S.mode !== "blocks");
      show("#subject-ctl", M.single_images.length > 0 && S.mode !== "blocks");
      show("#route-ctl", routeItems.length > 1 && S.mode !== "blocks");
      show("#points-ctl", S.mode === "blocks");
      show("#colorby-ctl", S.mode === "patches");
      show("#method-ctl", S.mode !== "compare");
      show("#image-ctl", M.images.length > 0 && !(S.mode !== "compare" && S.subject !== "mean"));
      show("#path-ctl", S.mode === "patches");
      show("#compare-ctl", S.mode === "compare");
      scatterPanel.classList.toggle("hidden", S.mode === "compare");
      heatPanelB.classList.toggle("hidden", S.mode !== "compare");
      help.textContent = {
        patches: "Click a point or a grid cell to select that patch (shift-click adds or removes it). Drag in the scatterplot to " +
          "lasso patches, or drag across the grid for a rectangle: the heat map shows their mean attention. Switching stage keeps " +
          "the selection on the same image area.",
        blocks: "Each point is one block's attention: of one image ((image, block) points: the maps pooled to at most " +
          `${M.pool_grid || 14}×${M.pool_grid || 14} groups of patches on both axes, then embedded) or of one patch of the mean ` +
          "map ((patch, block) points). Click a point to open that map in the patch view.",
        compare: "Two maps side by side on one colour scale. Click either grid: the selection is linked by image area (a patch of " +
          "a coarser stage covers the patches of a finer one).",
      }[S.mode];
    }

    /** Map patches of grid (h, w) to the patches of grid (h2, w2) covering the same image area. */
    function mapSelection(ps, from, to) {
      if (from[0] === to[0] && from[1] === to[1]) return ps.slice();
      const out = new Set();
      for (const p of ps) {
        const r = Math.floor(p / from[1]), c = p % from[1];
        const r0 = Math.floor(r * to[0] / from[0]), r1 = Math.max(r0, Math.ceil((r + 1) * to[0] / from[0]) - 1);
        const c0 = Math.floor(c * to[1] / from[1]), c1 = Math.max(c0, Math.ceil((c + 1) * to[1] / from[1]) - 1);
        for (let rr = r0; rr <= r1; rr++) for (let cc = c0; cc <= c1; cc++) out.add(rr * to[1] + cc);
      }
      return [...out].sort((a, b) => a - b);
    }
    function centreOf(g) { return Math.floor(g[0] / 2) * g[1] + Math.floor(g[1] / 2); }
    const gridB = () => blockOf(S.B.block).grid;
    const selectionB = () => S.anchor ? mapSelection(S.anchor.sel, S.anchor.grid, gridB())
      : mapSelection(S.selection, grid(), gridB());

    // ---------------------------------------------------------------- loading
    function heatFor(order, block, subject, sel) {
      const key = [order, block, subject, S.route, S.direction, sel.join(",")].join("|");
      return cached(cache.heat, key, () => source.heat(order, block, S.route, S.direction, sel, subject));
    }
    async function load() {
      const gen = ++generation;
      busy++;
      try {
        const sel = S.selection.slice().sort((x, y) => x - y);
        let pts = null, r = null;
        if (S.mode === "patches") {
          const subj = S.subject, m = S.method;
          pts = await cached(cache.coords, [S.order, S.block, m, subj].join("|"), () => source.coords(S.order, S.block, m, subj));
          if (S.colorBy === "scan" || S.showPath) r = await cached(cache.routes, S.order + "|" + S.block, () => source.routes(S.order, S.block));
        } else if (S.mode === "blocks") {
          const st = blockOf(S.block).stage;
          pts = await cached(cache.points, [S.points, S.order, st, S.method].join("|"), () => source.points(S.points, S.order, st, S.method));
        }
        const a = await heatFor(S.order, S.block, S.subject, sel);
        const b = S.mode === "compare" ? await heatFor(S.B.order, S.B.block, S.B.subject, selectionB()) : null;
        if (gen !== generation) return;
        points = pts; routes = r; heatA = a; heatB = b; lastError = null; status.textContent = "";
        layoutPoints();
        draw();
      } catch (e) {
        lastError = String(e.message || e);
        status.textContent = "error: " + lastError;
      } finally { busy--; }
    }
    function refresh(prevGrid) {
      syncControls();
      const g = grid();
      if (!S.selection.length) S.selection = [centreOf(g)];
      else if (S.anchor) S.selection = mapSelection(S.anchor.sel, S.anchor.grid, g);
      else if (prevGrid) S.selection = mapSelection(S.selection, prevGrid, g);
      S.selection = S.selection.filter((p) => p < L());
      if (!S.selection.length) S.selection = [centreOf(g)];
      S.hover = -1;
      return load();
    }

    // ---------------------------------------------------------------- scatterplot
    function layoutPoints() {
      screen = null;
      if (!points) return;
      const n = points.length / 2;
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      for (let i = 0; i < n; i++) { const x = points[2 * i], y = points[2 * i + 1];
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
      const span = Math.max(x1 - x0, y1 - y0) || 1, k = (SIZE - 2 * PAD) / span;
      const ox = (SIZE - (x1 - x0) * k) / 2, oy = (SIZE - (y1 - y0) * k) / 2;
      screen = new Float32Array(2 * n);
      for (let i = 0; i < n; i++) {
        screen[2 * i] = ox + (points[2 * i] - x0) * k;
        screen[2 * i + 1] = SIZE - (oy + (points[2 * i + 1] - y0) * k);
      }
    }
    /** What point i of the scatterplot is: a patch (patches mode) or a (block, image|patch) pair. */
    function describePoints() {
      if (S.mode === "patches") return null;
      const st = stageOf(blockOf(S.block).stage), nb = st.blocks.length, n = points.length / 2, per = n / nb;
      return { blocks: st.blocks, per, of: (i) => ({ block: st.blocks[Math.floor(i / per)], item: i % per }) };
    }
    const scanRoute = () => S.route === "sum" ? 0 : +S.route;
    function pointColours() {
      const n = points.length / 2;
      if (S.mode === "blocks") {
        const d = describePoints();
        return { cols: Array.from({ length: n }, (_, i) => css(TAB10[Math.floor(i / d.per) % 10])), legend: d.blocks };
      }
      const [h, w] = grid(), vals = new Float32Array(n);
      let top = 1, what;
      if (S.colorBy === "scan" && routes) {
        const k = scanRoute();
        for (let t = 0; t < n; t++) vals[routes[k * n + t]] = t;
        top = n - 1; what = "scan position on route " + k;
      } else {
        for (let p = 0; p < n; p++) vals[p] = S.colorBy === "col" ? p % w : Math.floor(p / w);
        top = (S.colorBy === "col" ? w : h) - 1; what = "grid " + (S.colorBy === "col" ? "column" : "row");
      }
      return { cols: Array.from(vals, (v) => css(lerp(VIRIDIS, top > 0 ? v / top : 0))), top, what };
    }
    let lasso = null;
    function drawScatter() {
      if (!screen || S.mode === "compare") return;
      const n = points.length / 2, rad = n > 1500 ? 2 : n > 400 ? 3 : 4.5;
      const pc = pointColours();
      sctx.clearRect(0, 0, SIZE, SIZE);
      const sel = S.mode === "patches" ? new Set(S.selection) : new Set(S.picked !== null && S.picked !== undefined ? [S.picked] : []);
      for (let p = 0; p < n; p++) {
        sctx.fillStyle = pc.cols[p];
        sctx.globalAlpha = sel.size > 1 && !sel.has(p) ? 0.45 : 1;
        sctx.beginPath(); sctx.arc(screen[2 * p], screen[2 * p + 1], rad, 0, 2 * Math.PI); sctx.fill();
      }
      sctx.globalAlpha = 1;
      const ring = sel.size > 50 ? 1 : 2.5;
      for (const p of sel) {
        if (p >= n) continue;
        sctx.fillStyle = pc.cols[p]; sctx.strokeStyle = "#e0218a"; sctx.lineWidth = ring < 2 ? 1 : 2;
        sctx.beginPath(); sctx.arc(screen[2 * p], screen[2 * p + 1], rad + ring, 0, 2 * Math.PI); sctx.fill(); sctx.stroke();
      }
      if (S.hover >= 0 && S.mode === "patches") {
        sctx.strokeStyle = "#000"; sctx.lineWidth = 1.5;
        sctx.beginPath(); sctx.arc(screen[2 * S.hover], screen[2 * S.hover + 1], rad + 5, 0, 2 * Math.PI); sctx.stroke();
      }
      if (lasso && lasso.length > 1) {
        sctx.strokeStyle = "#333"; sctx.setLineDash([4, 3]); sctx.lineWidth = 1;
        sctx.beginPath(); sctx.moveTo(lasso[0][0], lasso[0][1]);
        for (const [x, y] of lasso) sctx.lineTo(x, y);
        sctx.closePath(); sctx.stroke(); sctx.setLineDash([]);
      }
      const mname = METHOD_NAMES[S.method] || S.method;
      scatterLegend.innerHTML = "";
      if (S.mode === "patches") {
        scatterTitle.textContent = `Scatterplot: the ${n} patches of ${S.block} by their attention rows (${mname})`;
        scatterLegend.textContent = `Order ${S.order}, ${subjectName(S.subject)}. Colour: ${pc.what} (0 … ${pc.top}, viridis). ` +
          (S.method === "pca" ? "Axes: the first two principal components." : "Distances are only locally meaningful.");
      } else {
        const st = blockOf(S.block).stage, d = describePoints();
        scatterTitle.textContent = S.points === "interblock"
          ? `Inter-block: ${n} maps of stage ${st} (${d.blocks.length} blocks × ${d.per} images), ${mname}`
          : `Joint: the ${n} patches of the ${d.blocks.length} blocks of stage ${st} (mean maps), ${mname}`;
        scatterLegend.append(`Order ${S.order}. Colour: block — `);
        d.blocks.forEach((b, j) => {
          const sw = el("span", { class: "jm-swatch" }); sw.style.background = css(TAB10[j % 10]);
          scatterLegend.append(sw, ` ${b.replace("layers.", "").replace(".blocks.", ".")}  `);
        });
      }
    }
    function nearest(x, y, maxDist) {
      let best = -1, bd = maxDist * maxDist;
      for (let p = 0; p < screen.length / 2; p++) {
        const dx = screen[2 * p] - x, dy = screen[2 * p + 1] - y, d = dx * dx + dy * dy;
        if (d <= bd) { bd = d; best = p; }
      }
      return best;
    }
    function inside(poly, x, y) {
      let c = false;
      for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
        const [xi, yi] = poly[i], [xj, yj] = poly[j];
        if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) c = !c;
      }
      return c;
    }
    /** A click on point i of the blocks mode opens that map in the patch view. */
    function pick(i) {
      const d = describePoints(), { block, item } = d.of(i);
      const prev = grid();
      S.picked = i;
      S.block = block;
      if (S.points === "interblock") { S.subject = String(item); }
      else { S.subject = "mean"; S.selection = [item]; S.anchor = null; return refresh(null); }
      return refresh(prev);
    }

    // ---------------------------------------------------------------- heat maps
    function geom(g) { const cell = SIZE / Math.max(g[0], g[1]); return { h: g[0], w: g[1], cell, W: cell * g[1], H: cell * g[0] }; }
    function underlay(subject) {
      if (subject !== "mean") return M.single_images[+subject].image;  // a single image's map: over that image
      return S.image;
    }
    function drawHeat(cv, g, values, sel, subject, hover) {
      const G = geom(g), n = G.h * G.w, ctx = cv.getContext("2d");
      cv.width = Math.round(G.W); cv.height = Math.round(G.H);
      ctx.clearRect(0, 0, cv.width, cv.height);
      const u = underlay(subject), img = u >= 0 ? imageEl(u) : null;
      const withImage = !!(img && img.complete && img.naturalWidth);
      if (withImage) ctx.drawImage(img, 0, 0, G.W, G.H);
      for (let q = 0; q < n; q++) {
        const v = values[q], c = lerp(scale.stops, scale.t(v));
        ctx.fillStyle = withImage ? css(c, scale.alpha(v)) : css(c);
        const col = q % G.w, r = Math.floor(q / G.w), x0 = Math.round(col * G.cell), y0 = Math.round(r * G.cell);
        ctx.fillRect(x0, y0, Math.round((col + 1) * G.cell) - x0, Math.round((r + 1) * G.cell) - y0);
      }
      if (S.showPath && routes && cv === heatCv && S.mode === "patches") {
        const k = scanRoute();
        ctx.strokeStyle = "rgba(0,200,255,0.7)"; ctx.lineWidth = Math.max(1, Math.min(3, G.cell / 16));
        ctx.beginPath();
        for (let t = 0; t < n; t++) {
          const p = routes[k * n + t], x = (p % G.w + 0.5) * G.cell, y = (Math.floor(p / G.w) + 0.5) * G.cell;
          if (t === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        }
        ctx.stroke();
        const p0 = routes[k * n];
        ctx.fillStyle = "rgba(0,200,255,1)";
        ctx.beginPath(); ctx.arc((p0 % G.w + 0.5) * G.cell, (Math.floor(p0 / G.w) + 0.5) * G.cell, Math.max(2, G.cell / 5), 0, 2 * Math.PI); ctx.fill();
      }
      ctx.lineWidth = Math.max(1, Math.min(3, G.cell / 8));
      ctx.strokeStyle = sel.length > 1 ? "rgba(0,160,60,0.8)" : "#00a03c";
      for (const p of sel) ctx.strokeRect((p % G.w) * G.cell + 1, Math.floor(p / G.w) * G.cell + 1, G.cell - 2, G.cell - 2);
      if (hover >= 0) {
        ctx.strokeStyle = "#000";
        ctx.strokeRect((hover % G.w) * G.cell, Math.floor(hover / G.w) * G.cell, G.cell, G.cell);
      }
      if (rect && rect.cv === cv) {
        ctx.strokeStyle = "#000"; ctx.setLineDash([4, 3]);
        ctx.strokeRect(Math.min(rect.x0, rect.x1), Math.min(rect.y0, rect.y1), Math.abs(rect.x1 - rect.x0), Math.abs(rect.y1 - rect.y0));
        ctx.setLineDash([]);
      }
      cv.setAttribute("data-selected", sel.join(","));
      return withImage;
    }
    function captionFor(order, block, subject, withImage) {
      const g = blockOf(block).grid;
      let text = (subject === "mean" ? `Mean attention over ${M.count} images` : `Attention of the single ${subjectName(subject)}`) +
        `, ${block} (${g[0]}×${g[1]}), order ${order}, ` + (S.route === "sum" ? "routes summed" : "route " + S.route) + ". ";
      const u = underlay(subject);
      if (withImage) text += subject === "mean" ? `Drawn over image “${M.images[u].name}” (one of the averaged images); ` :
        "Drawn over that image; ";
      text += withImage ? "opacity ∝ |value|." : "No image under the map.";
      if (scale.kind === "diverging") text += withImage ? " Signed values: blue < 0 < red; near 0 the image shows through." :
        " Signed values: blue < 0 < red, white at 0.";
      return text;
    }
    function drawHeats() {
      if (!heatA) return;
      const selA = S.selection, skip = S.noSelf ? new Set(selA) : null;
      let values = heatA;
      if (S.mode === "compare" && heatB) { values = new Float32Array(heatA.length + heatB.length); values.set(heatA); values.set(heatB, heatA.length); }
      scale = scaleFor(values, M.signed, skip);
      const withImage = drawHeat(heatCv, grid(), heatA, selA, S.subject, S.hover);
      heatCv.setAttribute("data-block", S.block);
      heatCv.setAttribute("data-subject", S.subject);
      const rc = (p, g) => "(" + Math.floor(p / g[1]) + ", " + (p % g[1]) + ")";
      const selText = selA.length === 1 ? "patch " + rc(selA[0], grid()) : "mean of " + selA.length + " patches";
      heatTitle.textContent = (S.mode === "compare" ? "Left: " : "Patch view: ") + selText +
        (S.direction === "query" ? " attends to" : " is attended by");
      caption.textContent = captionFor(S.order, S.block, S.subject, withImage);
      if (S.mode === "compare" && heatB) {
        const selB = selectionB(), withB = drawHeat(heatCvB, gridB(), heatB, selB, S.B.subject, -1);
        heatCvB.setAttribute("data-block", S.B.block);
        heatTitleB.textContent = "Right: " + (selB.length === 1 ? "patch " + rc(selB[0], gridB()) : "mean of " + selB.length + " patches") +
          " (the same image area)" + (S.direction === "query" ? " attends to" : " is attended by");
        captionB.textContent = captionFor(S.B.order, S.B.block, S.B.subject, withB) + " One colour scale for both panels.";
      }
      drawColorbar(withImage);
      info.textContent = "selected: " + selA.slice(0, 12).map((p) => rc(p, grid())).join(" ") + (selA.length > 12 ? " …" : "") +
        (S.hover >= 0 ? " · hover " + rc(S.hover, grid()) + " value " + fmt(heatA[S.hover]) : "") +
        ` · data range ${fmt(scale.dataLo)} … ${fmt(scale.dataHi)}`;
      drawFindings();
    }
    function drawColorbar(withImage) {
      const bctx = barCv.getContext("2d"), W = barCv.width;
      bctx.clearRect(0, 0, W, barCv.height);
      if (withImage) { bctx.fillStyle = "#888"; bctx.fillRect(0, 0, W, barCv.height); }
      for (let x = 0; x < W; x++) {
        const v = scale.lo + (scale.hi - scale.lo) * x / (W - 1), c = lerp(scale.stops, scale.t(v));
        bctx.fillStyle = withImage ? css(c, scale.alpha(v)) : css(c);
        bctx.fillRect(x, 0, 1, barCv.height);
      }
      ticks.innerHTML = "";
      const marks = scale.kind === "diverging" ? [scale.lo, 0, scale.hi] : [scale.lo, (scale.lo + scale.hi) / 2, scale.hi];
      for (const v of marks) {
        const s = el("span", { text: fmt(v) });
        s.style.left = (100 * (v - scale.lo) / (scale.hi - scale.lo)) + "%";
        ticks.appendChild(s);
      }
    }
    function drawFindings() {
      const f = M.findings && M.findings[S.order];
      if (!f) { findings.textContent = ""; return; }
      const b = blockOf(S.block), st = b.stage, fs = f.stages[String(st)] || {}, fb = f.blocks[S.block] || {};
      const num = (v) => v === null || v === undefined ? "–" : fmt(v);
      // findings on fewer than 16 patches (jaxmamba.metrics.MIN_PATCHES) mean nothing: never shown
      // as numbers (studies written before jaxmamba stored null for them hold numbers)
      const MIN_FINDING_PATCHES = 16, g = (b.grid || [0, 0]), few = g[0] * g[1] < MIN_FINDING_PATCHES;
      if (few) {
        findings.textContent = `Findings, order ${S.order}, stage ${st} (${g[0]}×${g[1]} grid): too few patches ` +
          `(${g[0] * g[1]}, fewer than ${MIN_FINDING_PATCHES}) for block distinctness, sequence locality or attention distance to mean anything.`;
        return;
      }
      findings.textContent = `Findings, order ${S.order}, mean maps. Stage ${st}: block distinctness ${num(fs.block_distinctness)} ` +
        `(silhouette of block labels, patches embedded jointly)` +
        (fs.image_block_distinctness !== undefined && fs.image_block_distinctness !== null
          ? `, across images ${num(fs.image_block_distinctness)} (silhouette of block labels of the (image, block) maps)` : "") +
        `; attention distance ${num(fs.attention_distance)} of the grid diagonal; sequence locality ρ ${num(fs.sequence_locality)}. ` +
        `Block ${S.block}: distance ${num(fb.attention_distance)}, locality ρ ${num(fb.sequence_locality)}.`;
    }
    function cellAt(cv, g, x, y) {
      const G = geom(g), c = Math.floor(x / G.cell), r = Math.floor(y / G.cell);
      return r >= 0 && r < G.h && c >= 0 && c < G.w ? r * G.w + c : -1;
    }

    function draw() { drawScatter(); drawHeats(); }
    function select(ps, additive, from) {
      if (!ps.length) { draw(); return Promise.resolve(); }
      if (additive) {
        const s = new Set(S.selection);
        if (ps.length === 1 && s.has(ps[0])) s.delete(ps[0]); else for (const p of ps) s.add(p);
        if (s.size) S.selection = [...s];
      } else S.selection = [...new Set(ps)];
      S.anchor = from ? { grid: from.grid, sel: from.sel } : { grid: grid(), sel: S.selection.slice() };
      draw();
      return load();
    }
    function pos(ev, cv) {
      const r = cv.getBoundingClientRect();
      return [(ev.clientX - r.left) * (cv.width / r.width), (ev.clientY - r.top) * (cv.height / r.height)];
    }

    // ---------------------------------------------------------------- events
    let down = null, rect = null;
    scatterCv.addEventListener("mousedown", (ev) => { down = pos(ev, scatterCv); lasso = S.mode === "patches" ? [down] : null; ev.preventDefault(); });
    scatterCv.addEventListener("mousemove", (ev) => {
      if (!screen || S.mode !== "patches") return;
      const [x, y] = pos(ev, scatterCv);
      if (down && lasso) { lasso.push([x, y]); drawScatter(); return; }
      const p = nearest(x, y, 8);
      if (p !== S.hover) { S.hover = p; draw(); }
    });
    scatterCv.addEventListener("mouseleave", () => { if (!down && S.hover >= 0) { S.hover = -1; draw(); } });
    scatterCv.addEventListener("mouseup", (ev) => {
      if (!down || !screen) return;
      const [x, y] = pos(ev, scatterCv), poly = lasso;
      const start = down;
      down = null; lasso = null;
      if (S.mode === "blocks") { const p = nearest(x, y, 10); if (p >= 0) pick(p); return; }
      const moved = poly && poly.some(([px, py]) => Math.hypot(px - start[0], py - start[1]) > 4);
      if (moved && poly.length > 2) {
        const ps = [];
        for (let p = 0; p < L(); p++) if (inside(poly, screen[2 * p], screen[2 * p + 1])) ps.push(p);
        select(ps, ev.shiftKey);
      } else {
        const p = nearest(x, y, 10);
        if (p >= 0) select([p], ev.shiftKey); else draw();
      }
    });
    for (const [cv, g] of [[heatCv, grid], [heatCvB, gridB]]) {
      cv.addEventListener("mousedown", (ev) => { const [x, y] = pos(ev, cv); rect = { cv, x0: x, y0: y, x1: x, y1: y }; ev.preventDefault(); });
      cv.addEventListener("mousemove", (ev) => {
        const [x, y] = pos(ev, cv);
        if (rect && rect.cv === cv) { rect.x1 = x; rect.y1 = y; }
        if (cv !== heatCv) { if (rect) drawHeats(); return; }
        const p = cellAt(cv, g(), x, y);
        if (p !== S.hover || rect) { S.hover = p; draw(); }
      });
      cv.addEventListener("mouseleave", () => { if (!rect && S.hover >= 0) { S.hover = -1; draw(); } });
      cv.addEventListener("mouseup", (ev) => {
        if (!rect || rect.cv !== cv) return;
        const r = rect; rect = null;
        const G = g(), w = G[1];
        const a = cellAt(cv, G, Math.min(r.x0, r.x1), Math.min(r.y0, r.y1));
        const z = cellAt(cv, G, Math.max(r.x0, r.x1) - 1e-3, Math.max(r.y0, r.y1) - 1e-3);
        let ps = [];
        if (a >= 0 && z >= 0 && a !== z) {
          for (let rr = Math.floor(a / w); rr <= Math.floor(z / w); rr++) for (let cc = a % w; cc <= z % w; cc++) ps.push(rr * w + cc);
        } else {
          const p = cellAt(cv, G, r.x1, r.y1);
          if (p >= 0) ps = [p];
        }
        if (!ps.length) { draw(); return; }
        if (cv !== heatCv) {  // the right panel's cells: its image area on the left grid
          select(mapSelection(ps, G, grid()), false, { grid: G, sel: ps });
          return;
        }
        select(ps, ev.shiftKey);
      });
    }
    window.addEventListener("mouseup", () => { if (down || rect) { down = null; lasso = null; rect = null; draw(); } });
    const on = (elem, f) => elem.addEventListener("change", () => { const prev = S.block ? grid() : null; f(elem); refresh(prev); });
    on(ctl.mode, (t) => { S.mode = t.value; S.picked = null; });
    on(ctl.order, (t) => { S.order = t.value; });
    on(ctl.stage, (t) => { S.block = orderOf(S.order).blocks.find((n) => String(blockOf(n).stage) === t.value); S.picked = null; });
    on(ctl.block, (t) => { S.block = t.value; });
    on(ctl.subject, (t) => { S.subject = t.value; });
    on(ctl.route, (t) => { S.route = t.value; });
    on(ctl.method, (t) => { S.method = t.value; });
    on(ctl.points, (t) => { S.points = t.value; S.picked = null; });
    on(ctl.colorby, (t) => { S.colorBy = t.value; });
    on(ctl.direction, (t) => { S.direction = t.value; });
    on(ctl.image, (t) => { S.image = +t.value; });
    on(ctl.showpath, (t) => { S.showPath = t.checked; });
    on(ctl.noself, (t) => { S.noSelf = t.checked; });
    on(ctl.orderB, (t) => { S.B.order = t.value; });
    on(ctl.blockB, (t) => { S.B.block = t.value; });
    on(ctl.subjectB, (t) => { S.B.subject = t.value; });
    ctl.reset.addEventListener("click", () => select([centreOf(grid())], false));

    // ---------------------------------------------------------------- start
    const api = {
      ready: false, source: source.kind, state: S,
      get busy() { return busy; }, get error() { return lastError; },
      meta: () => M,
      select: (ps) => select(ps, false),
      pick: (i) => pick(i),
      heatValues: () => heatA ? Array.from(heatA) : null,
      heatValuesB: () => heatB ? Array.from(heatB) : null,
      scale: () => scale && { kind: scale.kind, lo: scale.lo, hi: scale.hi },
      colourAt: (v) => { const c = lerp(scale.stops, scale.t(v)); return [c[0] | 0, c[1] | 0, c[2] | 0]; },
      pointCount: () => (points ? points.length / 2 : 0),
      pointPosition: (p) => ({ x: screen[2 * p] * scatterCv.getBoundingClientRect().width / scatterCv.width,
        y: screen[2 * p + 1] * scatterCv.getBoundingClientRect().height / scatterCv.height }),
      setControl: (id, value) => { const e = root.querySelector("#" + id); if (e.type === "checkbox") e.checked = !!value; else e.value = value; e.dispatchEvent(new Event("change")); },
      row: source.rowSync ? (p) => Array.from(source.rowSync(S.order, S.block, S.route, p)) : null,
    };
    root.explorer = api;
    if (!window.explorer) window.explorer = api;
    busy++;
    source.meta().then((meta) => {
      M = meta;
      M.single_images = M.single_images || [];
      M.stages = M.stages || [];
      title.textContent = M.title || "jaxmamba attention explorer";
      const short = (o) => o.model_digest ? o.model_digest.slice(0, 8) : null;
      const models = [...new Set(M.orders.map((o) => o.model_digest || o.model).filter(Boolean))];
      const kinds = [...new Set(M.orders.map((o) => o.model).filter(Boolean))];
      sub.textContent = (M.count ? `Mean hidden attention over ${M.count} images` : "Hidden attention") +
        (models.length === 1 ? " · model: " + (kinds[0] || "") + (short(M.orders[0]) ? ` (${short(M.orders[0])}), every order` : "")
          : models.length > 1 ? ` · ${models.length} models (${kinds.join("; ")}), one trained per order: ` +
            M.orders.map((o) => `${o.name} ${short(o) || o.model}`).join(", ") : "") +
        (M.single_images.length ? ` · ${M.single_images.length} single images` : "") +
        (M.signed ? " · signed maps (diverging colour scale)" : "") + (M.synthetic ? " · SYNTHETIC planted maps" : "");
      S.order = M.orders[0].name;
      S.block = M.orders[0].blocks[0];
      S.method = M.methods[0];
      S.image = M.images.length ? 0 : -1;
      return refresh(null);
    }).then(() => { api.ready = true; }).catch((e) => { lastError = String(e.message || e); status.textContent = "error: " + lastError; })
      .finally(() => { busy--; });
    return () => { root.innerHTML = ""; };
  }
  return { mount, httpSource, embeddedSource, widgetSource, decodeMatrix, fmt, scaleFor };
})();
