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

  /** The local server: GET/POST /api/<method>. */
  function httpSource(base) {
    const endpoint = (m, args) => base + "/" + m + (args ? "?" + new URLSearchParams(args) : "");
    async function check(r) {
      if (!r.ok) { let msg = r.statusText; try { msg = (await r.json()).error; } catch (e) { /* text */ } throw new Error(msg); }
      return r;
    }
    return {
      kind: "http",
      meta: async () => (await check(await fetch(endpoint("meta")))).json(),
      coords: async (order, block, method) =>
        new Float32Array(await (await check(await fetch(endpoint("coords", { order, block, method })))).arrayBuffer()),
      routes: async (order, block) =>
        new Int32Array(await (await check(await fetch(endpoint("routes", { order, block })))).arrayBuffer()),
      heat: async (order, block, route, direction, patches) => {
        const r = await fetch(endpoint("heat"), { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ order, block, route, direction, patches }) });
        return new Float32Array(await (await check(r)).arrayBuffer());
      },
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
        blocks: Object.keys(D.data[o]) })),
      blocks: [...blocks.values()],
      images: D.images.map((im) => ({ name: im.name })),
    };
    return {
      kind: "embedded",
      meta: async () => meta,
      coords: async (order, block, method) => Float32Array.from(entry(order, block).coords[method].flat()),
      routes: async (order, block) => { const r = entry(order, block).routes; return r ? Int32Array.from(r.flat()) : null; },
      heat: async (order, block, route, direction, patches) => {
        const e = entry(order, block);
        return meanRows(matrix(order, block, route), e.h * e.w, patches, direction);
      },
      imageUrl: (i) => D.images[i].src,
      rowSync: (order, block, route, p) => { const e = entry(order, block), n = e.h * e.w; return matrix(order, block, route).slice(p * n, (p + 1) * n); },
    };
  }

  /** The notebook widget (anywidget): requests and answers as widget messages. */
  function widgetSource(model) {
    let next = 1;
    const pending = new Map();
    model.on("msg:custom", (msg, buffers) => {
      if (!msg || msg.kind !== "jm-answer" || !pending.has(msg.id)) return;
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) { reject(new Error(msg.error)); return; }
      const dv = buffers && buffers[0];
      resolve({ content: msg.content, bytes: dv ? dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength) : null });
    });
    const ask = (method, args) => new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      model.send({ kind: "jm-request", id, method, args: args || {} });
    });
    const urls = new Map();
    return {
      kind: "widget",
      meta: async () => (await ask("meta")).content,
      coords: async (order, block, method) => new Float32Array((await ask("coords", { order, block, method })).bytes),
      routes: async (order, block) => new Int32Array((await ask("routes", { order, block })).bytes),
      heat: async (order, block, route, direction, patches) =>
        new Float32Array((await ask("heat", { order, block, route, direction, patches })).bytes),
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

  function mount(root, source) {
    const SIZE = 500, PAD = 14;
    root.classList.add("jm-root");
    root.innerHTML = "";
    const title = el("h1", { text: "jaxmamba attention explorer" });
    const sub = el("div", { class: "jm-sub" });
    const ctl = {
      order: dropdown("order"), stage: dropdown("stage"), block: dropdown("block"), route: dropdown("route"),
      method: dropdown("method"), colorby: dropdown("colorby"), direction: dropdown("direction"), image: dropdown("image"),
      showpath: el("input", { id: "showpath", type: "checkbox" }), noself: el("input", { id: "noself", type: "checkbox" }),
      reset: el("button", { id: "reset", type: "button", text: "centre patch" }),
    };
    fill(ctl.direction, [["query", "what the selection attends to (rows)"], ["source", "what attends to the selection (columns)"]], "query");
    const controls = el("div", { class: "jm-controls" },
      control("order", ctl.order, "order"), control("stage", ctl.stage, "stage"), control("block", ctl.block, "block"),
      control("route", ctl.route, "route"), control("embedding", ctl.method, "method"), control("colour by", ctl.colorby, "colorby"),
      control("heat map", ctl.direction, "direction"), control("image", ctl.image, "image"),
      el("label", { id: "path-ctl" }, ctl.showpath, " scan path"), el("label", {}, ctl.noself, " scale without the selected patches"), ctl.reset);
    const scatterCv = el("canvas", { id: "scatter", class: "jm-scatter", width: SIZE, height: SIZE });
    const heatCv = el("canvas", { id: "heat", class: "jm-heat", width: SIZE, height: SIZE, "data-selected": "" });
    const barCv = el("canvas", { id: "colorbar", width: 260, height: 12 });
    const ticks = el("div", { class: "jm-ticks", id: "ticks" });
    const scatterTitle = el("h2", { id: "scatter-title", text: "Scatterplot" });
    const scatterLegend = el("div", { class: "jm-legend", id: "scatter-legend" });
    const heatTitle = el("h2", { id: "heat-title", text: "Patch view" });
    const caption = el("div", { class: "jm-caption", id: "caption" });
    const status = el("div", { class: "jm-status", id: "status" });
    const info = el("div", { class: "jm-info", id: "info" });
    const help = el("div", { class: "jm-help", text: "Click a point or a grid cell to select that patch (shift-click adds or removes it). " +
      "Drag in the scatterplot to lasso patches, or drag across the grid for a rectangle: the heat map then shows their mean " +
      "attention. Switching to another stage keeps the selection on the same image area." });
    root.append(title, sub, controls, status,
      el("div", { class: "jm-main" },
        el("section", { class: "jm-panel" }, scatterTitle, scatterCv, scatterLegend),
        el("section", { class: "jm-panel" }, heatTitle, heatCv, el("div", { class: "jm-bar" }, el("div", {}, barCv, ticks)), caption)),
      info, help);
    const sctx = scatterCv.getContext("2d"), hctx = heatCv.getContext("2d");

    let M = null;  // meta
    const S = { order: null, block: null, route: "sum", method: null, colorBy: "row", direction: "query",
      image: -1, showPath: false, noSelf: false, selection: [], hover: -1 };
    const blockOf = (name) => M.blocks.find((b) => b.name === name);
    const grid = () => blockOf(S.block).grid;
    const L = () => grid()[0] * grid()[1];
    const orderOf = (name) => M.orders.find((o) => o.name === name);
    let busy = 0, generation = 0, lastError = null;
    const coordsCache = new Map(), routesCache = new Map(), heatCache = new Map(), images = new Map();
    let coords = null, routes = null, heat = null, screen = null;

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
        im.onload = () => drawHeat();
        Promise.resolve(source.imageUrl(i)).then((u) => { im.src = u; });
        images.set(i, im);
      }
      return images.get(i);
    }

    // ---------------------------------------------------------------- controls
    function stages() { return [...new Set(orderOf(S.order).blocks.map((n) => blockOf(n).stage))]; }
    function syncControls() {
      S.order = fill(ctl.order, M.orders.map((o) => [o.name, o.name + (o.model && M.orders.some((q) => q.model !== o.model) ? " — " + o.model : "")]), S.order);
      root.querySelector("#order-ctl").classList.toggle("hidden", M.orders.length < 2);
      const names = orderOf(S.order).blocks;
      if (!names.includes(S.block)) S.block = names[0];
      const stage = fill(ctl.stage, stages().map((s) => [s, s === null ? "all" : "stage " + s]), blockOf(S.block).stage);
      const inStage = names.filter((n) => String(blockOf(n).stage) === String(stage));
      S.block = fill(ctl.block, inStage.map((n) => [n, n]), S.block);
      const routes = [["sum", "sum of routes"]];
      if (M.route_maps) { const k = orderOf(S.order).routes || 4; for (let r = 0; r < k; r++) routes.push([String(r), "route " + r]); }
      S.route = fill(ctl.route, routes, S.route);
      root.querySelector("#route-ctl").classList.toggle("hidden", routes.length < 2);
      S.method = fill(ctl.method, M.methods.map((m) => [m, { pca: "PCA", tsne: "t-SNE", umap: "UMAP" }[m] || m]), S.method);
      S.colorBy = fill(ctl.colorby, [["row", "grid row"], ["col", "grid column"], ["scan", "scan position"]], S.colorBy);
      S.image = +fill(ctl.image, [["-1", "none"]].concat(M.images.map((im, i) => [String(i), im.name])), String(S.image));
      root.querySelector("#image-ctl").classList.toggle("hidden", M.images.length === 0);
    }

    /** Map patches of grid (h, w) to the patches of grid (h2, w2) covering the same image area. */
    function mapSelection(ps, from, to) {
      if (from[0] === to[0] && from[1] === to[1]) return ps;
      const out = new Set();
      for (const p of ps) {
        const r = Math.floor(p / from[1]), c = p % from[1];
        const r0 = Math.floor(r * to[0] / from[0]), r1 = Math.max(r0, Math.ceil((r + 1) * to[0] / from[0]) - 1);
        const c0 = Math.floor(c * to[1] / from[1]), c1 = Math.max(c0, Math.ceil((c + 1) * to[1] / from[1]) - 1);
        for (let rr = r0; rr <= r1; rr++) for (let cc = c0; cc <= c1; cc++) out.add(rr * to[1] + cc);
      }
      return [...out].sort((a, b) => a - b);
    }
    function centre() { const [h, w] = grid(); return Math.floor(h / 2) * w + Math.floor(w / 2); }

    // ---------------------------------------------------------------- loading
    async function load() {
      const gen = ++generation;
      busy++;
      try {
        const [o, b, m] = [S.order, S.block, S.method];
        const needRoutes = S.colorBy === "scan" || S.showPath;
        const c = await cached(coordsCache, o + "|" + b + "|" + m, () => source.coords(o, b, m));
        const r = needRoutes ? await cached(routesCache, o + "|" + b, () => source.routes(o, b)) : null;
        const sel = S.selection.slice().sort((x, y) => x - y);
        const key = [o, b, S.route, S.direction, sel.join(",")].join("|");
        const hv = await cached(heatCache, key, () => source.heat(o, b, S.route, S.direction, sel));
        if (gen !== generation) return;
        coords = c; routes = r; heat = hv; lastError = null; status.textContent = "";
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
      if (!S.selection.length) S.selection = [centre()];
      else if (prevGrid) S.selection = mapSelection(S.selection, prevGrid, g);
      S.selection = S.selection.filter((p) => p < L());
      if (!S.selection.length) S.selection = [centre()];
      S.hover = -1;
      return load();
    }

    // ---------------------------------------------------------------- scatterplot
    function layoutPoints() {
      const n = L();
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      for (let i = 0; i < n; i++) { const x = coords[2 * i], y = coords[2 * i + 1];
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
      const span = Math.max(x1 - x0, y1 - y0) || 1, k = (SIZE - 2 * PAD) / span;
      const ox = (SIZE - (x1 - x0) * k) / 2, oy = (SIZE - (y1 - y0) * k) / 2;
      screen = new Float32Array(2 * n);
      for (let i = 0; i < n; i++) {
        screen[2 * i] = ox + (coords[2 * i] - x0) * k;
        screen[2 * i + 1] = SIZE - (oy + (coords[2 * i + 1] - y0) * k);
      }
    }
    const scanRoute = () => S.route === "sum" ? 0 : +S.route;
    function pointColours() {
      const [h, w] = grid(), n = h * w, vals = new Float32Array(n);
      let top = 1, what;
      if (S.colorBy === "scan" && routes) {
        const k = scanRoute();
        for (let t = 0; t < n; t++) vals[routes[k * n + t]] = t;
        top = n - 1; what = "scan position on route " + k;
      } else {
        for (let p = 0; p < n; p++) vals[p] = S.colorBy === "col" ? p % w : Math.floor(p / w);
        top = (S.colorBy === "col" ? w : h) - 1; what = "grid " + (S.colorBy === "col" ? "column" : "row");
      }
      return [Array.from(vals, (v) => css(lerp(VIRIDIS, top > 0 ? v / top : 0))), top, what];
    }
    let lasso = null;
    function drawScatter() {
      if (!screen) return;
      const n = L(), rad = n > 1500 ? 2 : n > 400 ? 3 : 4.5;
      const [cols, top, what] = pointColours();
      sctx.clearRect(0, 0, SIZE, SIZE);
      const sel = new Set(S.selection);
      for (let p = 0; p < n; p++) {
        sctx.fillStyle = cols[p];
        sctx.globalAlpha = sel.size > 1 && !sel.has(p) ? 0.45 : 1;
        sctx.beginPath(); sctx.arc(screen[2 * p], screen[2 * p + 1], rad, 0, 2 * Math.PI); sctx.fill();
      }
      sctx.globalAlpha = 1;
      const ring = sel.size > 50 ? 1 : 2.5;
      for (const p of sel) {
        sctx.fillStyle = cols[p]; sctx.strokeStyle = "#e0218a"; sctx.lineWidth = ring < 2 ? 1 : 2;
        sctx.beginPath(); sctx.arc(screen[2 * p], screen[2 * p + 1], rad + ring, 0, 2 * Math.PI); sctx.fill(); sctx.stroke();
      }
      if (S.hover >= 0) {
        sctx.strokeStyle = "#000"; sctx.lineWidth = 1.5;
        sctx.beginPath(); sctx.arc(screen[2 * S.hover], screen[2 * S.hover + 1], rad + 5, 0, 2 * Math.PI); sctx.stroke();
      }
      if (lasso && lasso.length > 1) {
        sctx.strokeStyle = "#333"; sctx.setLineDash([4, 3]); sctx.lineWidth = 1;
        sctx.beginPath(); sctx.moveTo(lasso[0][0], lasso[0][1]);
        for (const [x, y] of lasso) sctx.lineTo(x, y);
        sctx.closePath(); sctx.stroke(); sctx.setLineDash([]);
      }
      const mname = { pca: "PCA", tsne: "t-SNE", umap: "UMAP" }[S.method] || S.method;
      scatterTitle.textContent = `Scatterplot: the ${n} patches of ${S.block} by their attention rows (${mname})`;
      scatterLegend.textContent = `Order ${S.order}. Colour: ${what} (0 … ${top}, viridis). ` +
        (S.method === "pca" ? "Axes: the first two principal components." : "Distances are only locally meaningful.");
    }
    function nearest(x, y, maxDist) {
      let best = -1, bd = maxDist * maxDist;
      for (let p = 0; p < L(); p++) {
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

    // ---------------------------------------------------------------- heat map
    function gridGeom() { const [h, w] = grid(), cell = SIZE / Math.max(h, w); return { h, w, cell, W: cell * w, H: cell * h }; }
    let scale = null;
    function drawHeat() {
      if (!heat) return;
      const g = gridGeom(), n = L(), sel = new Set(S.selection);
      heatCv.width = Math.round(g.W); heatCv.height = Math.round(g.H);
      hctx.clearRect(0, 0, heatCv.width, heatCv.height);
      const img = S.image >= 0 ? imageEl(S.image) : null;
      const withImage = !!(img && img.complete && img.naturalWidth);
      if (withImage) hctx.drawImage(img, 0, 0, g.W, g.H);
      scale = scaleFor(heat, M.signed, S.noSelf ? sel : null);
      for (let q = 0; q < n; q++) {
        const v = heat[q], c = lerp(scale.stops, scale.t(v));
        hctx.fillStyle = withImage ? css(c, scale.alpha(v)) : css(c);
        const col = q % g.w, r = Math.floor(q / g.w), x0 = Math.round(col * g.cell), y0 = Math.round(r * g.cell);
        hctx.fillRect(x0, y0, Math.round((col + 1) * g.cell) - x0, Math.round((r + 1) * g.cell) - y0);
      }
      if (S.showPath && routes) {
        const k = scanRoute();
        hctx.strokeStyle = "rgba(0,200,255,0.7)"; hctx.lineWidth = Math.max(1, Math.min(3, g.cell / 16));
        hctx.beginPath();
        for (let t = 0; t < n; t++) {
          const p = routes[k * n + t], x = (p % g.w + 0.5) * g.cell, y = (Math.floor(p / g.w) + 0.5) * g.cell;
          if (t === 0) hctx.moveTo(x, y); else hctx.lineTo(x, y);
        }
        hctx.stroke();
        const p0 = routes[k * n];
        hctx.fillStyle = "rgba(0,200,255,1)";
        hctx.beginPath(); hctx.arc((p0 % g.w + 0.5) * g.cell, (Math.floor(p0 / g.w) + 0.5) * g.cell, Math.max(2, g.cell / 5), 0, 2 * Math.PI); hctx.fill();
      }
      hctx.lineWidth = Math.max(1, Math.min(3, g.cell / 8));
      hctx.strokeStyle = sel.size > 1 ? "rgba(0,160,60,0.8)" : "#00a03c";
      for (const p of sel) hctx.strokeRect((p % g.w) * g.cell + 1, Math.floor(p / g.w) * g.cell + 1, g.cell - 2, g.cell - 2);
      if (S.hover >= 0) {
        hctx.strokeStyle = "#000";
        hctx.strokeRect((S.hover % g.w) * g.cell, Math.floor(S.hover / g.w) * g.cell, g.cell, g.cell);
      }
      if (rect) {
        hctx.strokeStyle = "#000"; hctx.setLineDash([4, 3]);
        hctx.strokeRect(Math.min(rect[0], rect[2]), Math.min(rect[1], rect[3]), Math.abs(rect[2] - rect[0]), Math.abs(rect[3] - rect[1]));
        hctx.setLineDash([]);
      }
      heatCv.setAttribute("data-selected", S.selection.join(","));
      heatCv.setAttribute("data-block", S.block);
      drawColorbar(withImage);
      const rc = (p) => "(" + Math.floor(p / g.w) + ", " + (p % g.w) + ")";
      const selText = S.selection.length === 1 ? "patch " + rc(S.selection[0]) : "mean of " + S.selection.length + " patches";
      heatTitle.textContent = "Patch view: " + selText + (S.direction === "query" ? " attends to" : " is attended by");
      const what = M.count ? `Mean attention over ${M.count} images` : "Attention";
      caption.textContent = what + `, ${S.block} (${g.h}×${g.w}), order ${S.order}, ` +
        (S.route === "sum" ? "routes summed" : "route " + S.route) + ". " +
        (withImage ? `Drawn over image “${M.images[S.image].name}” (one of the averaged images), opacity ∝ |value|.`
          : "No image under the map.") +
        (scale.kind === "diverging" ? " Signed values: blue < 0 < red, white at 0." : "");
      info.textContent = "selected: " + S.selection.slice(0, 12).map(rc).join(" ") + (S.selection.length > 12 ? " …" : "") +
        (S.hover >= 0 ? " · hover " + rc(S.hover) + " value " + fmt(heat[S.hover]) : "") +
        ` · data range ${fmt(scale.dataLo)} … ${fmt(scale.dataHi)}`;
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
    function cellAt(x, y) {
      const g = gridGeom(), c = Math.floor(x / g.cell), r = Math.floor(y / g.cell);
      return r >= 0 && r < g.h && c >= 0 && c < g.w ? r * g.w + c : -1;
    }

    function draw() { drawScatter(); drawHeat(); }
    function select(ps, additive) {
      if (!ps.length) { draw(); return Promise.resolve(); }
      if (additive) {
        const s = new Set(S.selection);
        if (ps.length === 1 && s.has(ps[0])) s.delete(ps[0]); else for (const p of ps) s.add(p);
        if (s.size) S.selection = [...s];
      } else S.selection = [...new Set(ps)];
      draw();
      return load();
    }
    function pos(ev, cv) {
      const r = cv.getBoundingClientRect();
      return [(ev.clientX - r.left) * (cv.width / r.width), (ev.clientY - r.top) * (cv.height / r.height)];
    }

    // ---------------------------------------------------------------- events
    let down = null, rect = null;
    scatterCv.addEventListener("mousedown", (ev) => { down = pos(ev, scatterCv); lasso = [down]; ev.preventDefault(); });
    scatterCv.addEventListener("mousemove", (ev) => {
      if (!screen) return;
      const [x, y] = pos(ev, scatterCv);
      if (down) { lasso.push([x, y]); drawScatter(); return; }
      const p = nearest(x, y, 8);
      if (p !== S.hover) { S.hover = p; draw(); }
    });
    scatterCv.addEventListener("mouseleave", () => { if (!down && S.hover >= 0) { S.hover = -1; draw(); } });
    scatterCv.addEventListener("mouseup", (ev) => {
      if (!down || !screen) return;
      const [x, y] = pos(ev, scatterCv), poly = lasso;
      const moved = poly.some(([px, py]) => Math.hypot(px - down[0], py - down[1]) > 4);
      down = null; lasso = null;
      if (moved && poly.length > 2) {
        const ps = [];
        for (let p = 0; p < L(); p++) if (inside(poly, screen[2 * p], screen[2 * p + 1])) ps.push(p);
        select(ps, ev.shiftKey);
      } else {
        const p = nearest(x, y, 10);
        if (p >= 0) select([p], ev.shiftKey); else draw();
      }
    });
    heatCv.addEventListener("mousedown", (ev) => { const [x, y] = pos(ev, heatCv); rect = [x, y, x, y]; ev.preventDefault(); });
    heatCv.addEventListener("mousemove", (ev) => {
      const [x, y] = pos(ev, heatCv);
      if (rect) { rect[2] = x; rect[3] = y; }
      const p = cellAt(x, y);
      if (p !== S.hover || rect) { S.hover = p; draw(); }
    });
    heatCv.addEventListener("mouseleave", () => { if (!rect && S.hover >= 0) { S.hover = -1; draw(); } });
    heatCv.addEventListener("mouseup", (ev) => {
      if (!rect) return;
      const r = rect; rect = null;
      const a = cellAt(Math.min(r[0], r[2]), Math.min(r[1], r[3])), z = cellAt(Math.max(r[0], r[2]) - 1e-3, Math.max(r[1], r[3]) - 1e-3);
      if (a >= 0 && z >= 0 && a !== z) {
        const w = grid()[1], ps = [];
        for (let rr = Math.floor(a / w); rr <= Math.floor(z / w); rr++) for (let cc = a % w; cc <= z % w; cc++) ps.push(rr * w + cc);
        select(ps, ev.shiftKey);
      } else {
        const p = cellAt(r[2], r[3]);
        if (p >= 0) select([p], ev.shiftKey); else draw();
      }
    });
    window.addEventListener("mouseup", () => { if (down || rect) { down = null; lasso = null; rect = null; draw(); } });
    const on = (elem, f) => elem.addEventListener("change", () => { const prev = S.block ? grid() : null; f(elem); refresh(prev); });
    on(ctl.order, (t) => { S.order = t.value; });
    on(ctl.stage, (t) => { S.block = orderOf(S.order).blocks.find((n) => String(blockOf(n).stage) === t.value); });
    on(ctl.block, (t) => { S.block = t.value; });
    on(ctl.route, (t) => { S.route = t.value; });
    on(ctl.method, (t) => { S.method = t.value; });
    on(ctl.colorby, (t) => { S.colorBy = t.value; });
    on(ctl.direction, (t) => { S.direction = t.value; });
    on(ctl.image, (t) => { S.image = +t.value; });
    on(ctl.showpath, (t) => { S.showPath = t.checked; });
    on(ctl.noself, (t) => { S.noSelf = t.checked; });
    ctl.reset.addEventListener("click", () => select([centre()], false));

    // ---------------------------------------------------------------- start
    const api = {
      ready: false, source: source.kind, state: S,
      get busy() { return busy; }, get error() { return lastError; },
      meta: () => M,
      select: (ps) => select(ps, false),
      heatValues: () => heat ? Array.from(heat) : null,
      scale: () => scale && { kind: scale.kind, lo: scale.lo, hi: scale.hi },
      colourAt: (v) => { const c = lerp(scale.stops, scale.t(v)); return [c[0] | 0, c[1] | 0, c[2] | 0]; },
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
      title.textContent = M.title || "jaxmamba attention explorer";
      const models = [...new Set(M.orders.map((o) => o.model).filter(Boolean))];
      sub.textContent = (M.count ? `Mean hidden attention over ${M.count} images` : "Hidden attention") +
        (models.length === 1 ? " · model: " + models[0] : models.length > 1 ? " · one model per order" : "") +
        (M.signed ? " · signed maps (diverging colour scale)" : "");
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
