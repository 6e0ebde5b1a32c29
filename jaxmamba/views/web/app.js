/* jaxmamba attention explorer: one front end, three data sources.
 *
 *   JM.mount(element, JM.httpSource("api"))        the local server (jaxmamba serve)
 *   JM.mount(element, JM.embeddedSource(data))     the offline single file (jaxmamba export)
 *   JM.mount(element, JM.widgetSource(model))      the notebook widget (jaxmamba.show)
 *
 * A source answers meta(), coords(order, block, method), routes(order, block),
 * heat(order, block, route, direction, patches), matrix(order, block, route, coords, size),
 * overview(order, block, route, direction, patches, subject) and imageUrl(i); the app asks only
 * for what it draws: the coordinates of a block, the mean row (or column) of the selection, a
 * block's matrix pooled to screen size, and the selection's mean row in every block.
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

  /** Colour scales (the shared contract of the explorer and the static figures).
   *
   *  scaleFor(values, signed, skip, kind): the scale of a map's values without the indices in
   *  `skip` (the selected patches, by default). m = max |v| over those data; the domain is [0, m]
   *  (sequential, inferno) or [-m, m] for signed maps (diverging RdBu, white at 0).
   *    "linear": t = v / m, or 0.5 + 0.5 v / m when signed;
   *    "log":    symlog (matplotlib's SymLogNorm, linscale 1, base 10) with a linear band
   *              |v| <= c = 1e-3 · m: T(a) = a·s inside it, else sign(a)·c·(s + log10(|a| / c)),
   *              s = 1 / (1 - 1/10); t = T(v) / T(m), or 0.5 + 0.5 T(v) / T(m);
   *    "rank":   t = the value's quantile among the data (average rank of ties / (n - 1),
   *              interpolated linearly between the data's values), or 0.5 + 0.5 sign(v) q(|v|).
   *  Values outside the domain are clipped to the end colours. Returns {kind, signed, lo, hi,
   *  dataLo, dataHi, m, band, t(v), stops, ticks: [{v, pos, label}]} (pos in 0..1 = t(v)). */
  const SYMLOG_BAND = 1e-3, SYMLOG_S = 1 / (1 - 1 / 10);
  const SCALE_KINDS = ["linear", "log", "rank"];
  function scaleFor(values, signed, skip, kind = "log") {
    if (!SCALE_KINDS.includes(kind)) throw new Error("no colour scale " + kind);
    const data = [];
    let dataLo = Infinity, dataHi = -Infinity;
    for (let i = 0; i < values.length; i++) {
      if (skip && skip.has(i)) continue;
      const v = values[i];
      if (!isFinite(v)) continue;
      data.push(v);
      if (v < dataLo) dataLo = v;
      if (v > dataHi) dataHi = v;
    }
    if (!data.length) { dataLo = 0; dataHi = 0; }
    const sgn = !!signed || dataLo < 0;
    let m = 0;
    for (const v of data) if (Math.abs(v) > m) m = Math.abs(v);
    if (!(m > 0)) m = 1;  // an all-zero (or empty) map: any scale shows it as 0
    const out = { kind, signed: sgn, lo: sgn ? -m : 0, hi: m, dataLo, dataHi, m, band: null, n: data.length,
      stops: sgn ? RDBU : INFERNO };
    const wrap = (f) => sgn ? (v) => 0.5 + 0.5 * f(v) : f;  // f: v -> -1..1 (signed) or 0..1
    const tick = (v, label) => ({ v, pos: Math.min(1, Math.max(0, out.t(v))), label: label === undefined ? fmt(v) : label });
    if (kind === "linear") {
      out.t = wrap((v) => v / m);
      const vs = sgn ? [-m, -m / 2, 0, m / 2, m] : [0, m / 4, m / 2, 3 * m / 4, m];
      out.ticks = vs.map((v) => tick(v));
    } else if (kind === "log") {
      const c = SYMLOG_BAND * m, T = (a) => Math.abs(a) <= c ? a * SYMLOG_S : Math.sign(a) * c * (SYMLOG_S + Math.log10(Math.abs(a) / c));
      const Tm = T(m);
      out.band = c;
      out.t = wrap((v) => T(v) / Tm);
      const dec = [];
      for (let k = Math.ceil(Math.log10(c) - 1e-9); Math.pow(10, k) <= m * (1 + 1e-9); k++) {
        const d = Math.pow(10, k);
        if (d >= c * (1 - 1e-9)) dec.push(d);
      }
      const pos = [0, ...dec.filter((d) => d < m * (1 - 1e-9)), m];
      const vs = sgn ? [...pos.slice(1).reverse().map((v) => -v), ...pos] : pos;
      out.ticks = vs.map((v) => tick(v, dec.includes(Math.abs(v)) ? (v < 0 ? "-" : "") + decade(Math.abs(v)) : fmt(v)));
    } else {
      // average ranks of the distinct values of the data (of |v| when signed), then interpolation
      const xs = (sgn ? data.map(Math.abs) : data.slice()).sort((a, b) => a - b), n = xs.length;
      const u = [], r = [];
      for (let i = 0; i < n;) {
        let j = i;
        while (j + 1 < n && xs[j + 1] === xs[i]) j++;
        u.push(xs[i]); r.push((i + j) / 2);
        i = j + 1;
      }
      const den = Math.max(n - 1, 1);
      const q = (v) => {
        if (!u.length || !(v > u[0])) return u.length && v === u[0] ? r[0] / den : 0;
        if (v >= u[u.length - 1]) return r[r.length - 1] / den;
        let a = 0, b = u.length - 1;  // u[a] < v <= u[b]
        while (b - a > 1) { const mid = (a + b) >> 1; if (u[mid] < v) a = mid; else b = mid; }
        return (r[a] + (r[b] - r[a]) * (v - u[a]) / (u[b] - u[a])) / den;
      };
      out.t = wrap(sgn ? (v) => Math.sign(v) * q(Math.abs(v)) : q);
      // the value at a quantile p (inverse of q on the data's positions)
      const at = (p) => { if (!n) return 0; const x = p * (n - 1), i = Math.min(Math.floor(x), n - 1), f = x - i;
        return i + 1 < n ? xs[i] + f * (xs[i + 1] - xs[i]) : xs[i]; };
      const ps = sgn ? [[0, -at(1)], [0.25, -at(0.5)], [0.5, 0], [0.75, at(0.5)], [1, at(1)]]
        : [0, 0.25, 0.5, 0.75, 1].map((p) => [p, at(p)]);
      out.ticks = ps.map(([, v]) => tick(v));  // at the quantiles' positions (ties: their average rank)
    }
    return out;
  }
  /** 10^k written as 1e-5, 0.01, 1, 100, 1e4. */
  function decade(d) {
    const k = Math.round(Math.log10(d));
    return k >= -2 && k <= 3 ? String(Number(Math.pow(10, k).toPrecision(1))) : "1e" + k;
  }
  /** A colour of a scale: [r, g, b] (floats 0..255). */
  const colourOf = (sc, v) => lerp(sc.stops, sc.t(v));
  /** In words, for captions. */
  function describeScale(sc) {
    const what = sc.kind === "log" ? `log scale (symlog; linear below 1e-3 × max = ${fmt(sc.band)}), decades marked`
      : sc.kind === "rank" ? (sc.signed ? `rank scale: colour = sign × the quantile of |value| among the ${sc.n} values`
        : `rank scale: colour = the value's quantile among the ${sc.n} values`) + ", the bar labelled with the values at its quantiles"
        : "linear scale";
    return what + (sc.signed ? `, ${fmt(sc.lo)} … ${fmt(sc.hi)}, blue < 0 < red (white at 0)` : `, ${fmt(sc.lo)} … ${fmt(sc.hi)} (inferno)`);
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
  /** The patches of grid `to` covering the image area of patches `ps` of grid `from` (sorted;
   *  the rule of jaxmamba.study.map_selection). */
  function mapCells(ps, from, to) {
    if (from[0] === to[0] && from[1] === to[1]) return [...new Set(ps)].sort((a, b) => a - b);
    const out = new Set();
    for (const p of ps) {
      const r = Math.floor(p / from[1]), c = p % from[1];
      const r0 = Math.floor(r * to[0] / from[0]), r1 = Math.max(r0, Math.ceil((r + 1) * to[0] / from[0]) - 1);
      const c0 = Math.floor(c * to[1] / from[1]), c1 = Math.max(c0, Math.ceil((c + 1) * to[1] / from[1]) - 1);
      for (let rr = r0; rr <= r1; rr++) for (let cc = c0; cc <= c1; cc++) out.add(rr * to[1] + cc);
    }
    return [...out].sort((a, b) => a - b);
  }
  const MATRIX_SIZES = [16, 1024];  // a pooled matrix's side in pixels, as the server's
  /** An (L, L) map `A` (flat, row-major) in the scan order `perm` (scan position -> patch),
   *  M[t, s] = A[perm[t], perm[s]], pooled by the mean over f x f tiles (the last tile of an axis
   *  shorter when f does not divide L): the server's Study.matrix, in float64, then float32. */
  function poolMatrix(A, L, perm, f) {
    const n = Math.ceil(L / f), total = new Float64Array(n * n), tile = new Int32Array(L);
    for (let s = 0; s < L; s++) tile[s] = Math.floor(s / f);
    for (let t = 0; t < L; t++) {
      const row = perm[t] * L, o = tile[t] * n;
      for (let s = 0; s < L; s++) total[o + tile[s]] += A[row + perm[s]];
    }
    const out = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++)
      out[i * n + j] = total[i * n + j] / (Math.min(f, L - i * f) * Math.min(f, L - j * f));
    return out;
  }
  /** The checked arguments of a matrix request: [coords, size, f, n] (errors as the server's). */
  function matrixArgs(L, K, route, coords, size) {
    const isInt = (v) => Number.isInteger(v) || (typeof v === "string" && /^[0-9]{1,9}$/.test(v));
    if (size === undefined || size === null) size = 512;
    if (!isInt(size) || +size < MATRIX_SIZES[0] || +size > MATRIX_SIZES[1])
      throw new Error(`size must be an integer in ${MATRIX_SIZES[0]}..${MATRIX_SIZES[1]} (pixels), got ${size}`);
    if (coords === undefined || coords === null) coords = route === "sum" ? 0 : route;
    if (!isInt(coords) || +coords >= K) throw new Error(`coords must be a route 0..${K - 1} (its scan order gives the axes), got ${coords}`);
    const f = Math.ceil(L / +size);
    return [+coords, +size, f, Math.ceil(L / f)];
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
    const described = async (r) => ({ content: JSON.parse(r.headers.get("X-Array") || "{}"), values: await floats(r) });
    return {
      kind: "http",
      meta: () => request(endpoint("meta"), (r) => r.json()),
      coords: (order, block, method, subject) => request(endpoint("coords", { order, block, method, subject }), floats),
      routes: (order, block) => request(endpoint("routes", { order, block }), async (r) => new Int32Array(await r.arrayBuffer())),
      points: (kind, order, stage, method) => request(endpoint("points", { kind, order, stage, method }), floats),
      heat: (order, block, route, direction, patches, subject) =>
        request(endpoint("heat"), floats, { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ order, block, route, direction, patches, subject }) }),
      matrix: (order, block, route, coords, size) => request(endpoint("matrix", { order, block, route, coords, size }), described),
      overview: (order, block, route, direction, patches, subject) =>
        request(endpoint("overview"), described, { method: "POST", headers: { "Content-Type": "application/json" },
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
    return {
      kind: "embedded",
      meta: async () => D.meta,
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
      matrix: async (order, block, route, coords, size) => {
        const e = entry(order, block), L = e.h * e.w;
        if (!e.routes) throw new Error("this file holds no scan routes of " + order + " / " + block);
        if (route !== "sum" && !e.route_attn) throw new Error("this file holds no per-route maps (export --routes keeps them)");
        if (route !== "sum" && !(Number.isInteger(+route) && +route >= 0 && +route < e.routes.length))
          throw new Error(`route must be 'sum' or 0..${e.routes.length - 1}, got ${route}`);
        const [c, , f, n] = matrixArgs(L, e.routes.length, route, coords, size);
        const key = ["pooled", order, block, route, c, f].join("|");
        if (!cache.has(key)) cache.set(key, poolMatrix(matrix(order, block, route), L, e.routes[c], f));
        return { content: { dtype: "float32", shape: [n, n], f, L, coords: c, route, n }, values: cache.get(key) };
      },
      overview: async (order, block, route, direction, patches, subject) => {
        if (subject !== undefined && subject !== null && subject !== "mean") throw new Error("this file holds the mean maps only");
        const from = entry(order, block), parts = [], chunks = [];
        let offset = 0;
        for (const [name, e] of Object.entries(D.data[order])) {
          const L = e.h * e.w, sel = mapCells(patches, [from.h, from.w], [e.h, e.w]);
          chunks.push(meanRows(matrix(order, name, route), L, sel, direction));
          parts.push({ name, stage: e.stage, grid: [e.h, e.w], offset, length: L });
          offset += L;
        }
        const values = new Float32Array(offset);
        chunks.forEach((c, i) => values.set(c, parts[i].offset));
        return { content: { dtype: "float32", shape: [offset], blocks: parts }, values };
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
      matrix: async (order, block, route, coords, size) => {
        const a = await ask("matrix", { order, block, route, coords, size });
        return { content: a.content, values: new Float32Array(a.bytes) };
      },
      overview: async (order, block, route, direction, patches, subject) => {
        const a = await ask("overview", { order, block, route, direction, patches, subject });
        return { content: a.content, values: new Float32Array(a.bytes) };
      },
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
  /** Opacities of a map over an image (the colour bar is drawn the same way): 0.75 by default; 0.5
   *  lets a faint image (a small digit) show through, 0.9 keeps the colours nearly exact. */
  const OPACITIES = [0.5, 0.75, 0.9];
  const METHOD_NAMES = { pca: "PCA", tsne: "t-SNE", umap: "UMAP" };
  const MODES = [["patches", "Patches of a block"], ["blocks", "Blocks of a stage"], ["compare", "Side by side"],
    ["matrix", "Attention matrix"], ["overview", "Selection in every block"]];

  function mount(root, source) {
    const SIZE = 500, PAD = 14, BAR_W = 400;
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
      scale: dropdown("scale"), underlay: dropdown("underlay"), opacity: dropdown("opacity"), comparescale: dropdown("comparescale"),
      reset: el("button", { id: "reset", type: "button", text: "centre patch" }),
    };
    fill(ctl.mode, MODES, "patches");
    fill(ctl.direction, [["query", "what the selection attends to (rows)"], ["source", "what attends to the selection (columns)"]], "query");
    fill(ctl.scale, [["log", "log (symlog)"], ["linear", "linear"], ["rank", "rank (quantiles)"]], "log");
    fill(ctl.underlay, [["grey", "grey (dimmed)"], ["colour", "in colour"], ["none", "none"]], "grey");
    fill(ctl.opacity, OPACITIES.map((a) => [String(a), String(a)]), "0.75");
    ctl.noself.checked = true;
    fill(ctl.points, [["interblock", "one point per (image, block) map"], ["joint", "one point per (patch, block), mean maps"]], "interblock");
    const row1 = el("div", { class: "jm-controls" },
      control("view", ctl.mode, "mode"), control("order", ctl.order, "order"), control("stage", ctl.stage, "stage"),
      control("block", ctl.block, "block"), control("map of", ctl.subject, "subject"), control("route", ctl.route, "route"),
      control("embedding", ctl.method, "method"), control("points", ctl.points, "points"), control("colour by", ctl.colorby, "colorby"));
    const row2 = el("div", { class: "jm-controls" },
      control("heat map", ctl.direction, "direction"), control("colour scale", ctl.scale, "scale"),
      control("image under the map", ctl.underlay, "underlay"), control("image", ctl.image, "image"),
      control("map opacity", ctl.opacity, "opacity"),
      el("label", { id: "path-ctl" }, ctl.showpath, " scan path"), el("label", { id: "noself-ctl" }, ctl.noself, " scale without the selected patches"), ctl.reset);
    const rowB = el("div", { class: "jm-controls", id: "compare-ctl" }, el("b", { text: "right panel:" }),
      control("order", ctl.orderB, "orderB"), control("block", ctl.blockB, "blockB"), control("map of", ctl.subjectB, "subjectB"),
      control("colour scales", ctl.comparescale, "comparescale"));
    const scatterCv = el("canvas", { id: "scatter", class: "jm-scatter", width: SIZE, height: SIZE });
    const heatCv = el("canvas", { id: "heat", class: "jm-heat", width: SIZE, height: SIZE, "data-selected": "" });
    const heatCvB = el("canvas", { id: "heatB", class: "jm-heat", width: SIZE, height: SIZE, "data-selected": "" });
    const barCv = el("canvas", { id: "colorbar", width: BAR_W, height: 12 });
    const ticks = el("div", { class: "jm-ticks", id: "ticks" });
    const barNote = el("div", { class: "jm-barnote", id: "colorbar-note" });
    const barCvB = el("canvas", { id: "colorbarB", width: BAR_W, height: 12 });
    const ticksB = el("div", { class: "jm-ticks", id: "ticksB" });
    const barNoteB = el("div", { class: "jm-barnote", id: "colorbar-note-b" });
    const loadingA = el("div", { class: "jm-loading", id: "loading" });
    const loadingB = el("div", { class: "jm-loading", id: "loading-b" });
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
    const barB = el("div", { class: "jm-bar", id: "colorbar-b" }, el("div", {}, barCvB, ticksB, barNoteB));
    const heatPanel = el("section", { class: "jm-panel", id: "heat-panel" }, heatTitle, el("div", { class: "jm-stack" }, heatCv, loadingA),
      el("div", { class: "jm-bar" }, el("div", {}, barCv, ticks, barNote)), caption);
    const heatPanelB = el("section", { class: "jm-panel", id: "heat-panel-b" }, heatTitleB, el("div", { class: "jm-stack" }, heatCvB, loadingB),
      barB, captionB);
    // the matrix view and the blocks overview (their own panels, drawn by drawMatrix / drawOverview)
    const matrixCv = el("canvas", { id: "matrix", class: "jm-matrix", width: 500, height: 500 });
    const matrixBar = el("canvas", { id: "matrix-colorbar", width: BAR_W, height: 12 });
    const matrixTicks = el("div", { class: "jm-ticks", id: "matrix-ticks" });
    const matrixBarNote = el("div", { class: "jm-barnote", id: "matrix-colorbar-note" });
    const matrixTitle = el("h2", { id: "matrix-title", text: "Attention matrix" });
    const matrixCaption = el("div", { class: "jm-caption", id: "matrix-caption" });
    const matrixInfo = el("div", { class: "jm-caption", id: "matrix-info" });
    const matrixAxes = el("select", { id: "matrix-coords" });
    const matrixPanel = el("section", { class: "jm-panel hidden", id: "matrix-panel" }, matrixTitle,
      el("div", { class: "jm-controls" }, control("axes: the scan order of", matrixAxes, "matrix-coords")), matrixCv,
      el("div", { class: "jm-bar" }, el("div", {}, matrixBar, matrixTicks, matrixBarNote)), matrixCaption, matrixInfo);
    const overviewTitle = el("h2", { id: "overview-title", text: "The selection in every block" });
    const overviewBox = el("div", { class: "jm-overview", id: "overview" });
    const overviewCaption = el("div", { class: "jm-caption jm-wide", id: "overview-caption" });
    const overviewPanel = el("section", { class: "jm-panel hidden", id: "overview-panel" }, overviewTitle, overviewCaption, overviewBox);
    root.append(title, sub, row1, row2, rowB, findings, status,
      el("div", { class: "jm-main" }, scatterPanel, matrixPanel, heatPanel, heatPanelB, overviewPanel), info, help);
    const sctx = scatterCv.getContext("2d");

    let M = null;  // meta
    const S = { mode: "patches", order: null, block: null, subject: "mean", route: "sum", method: null, points: "interblock",
      colorBy: "row", direction: "query", image: -1, showPath: false, noSelf: true, selection: [], hover: -1,
      scale: "log", underlay: "grey", opacity: 0.75, compareScale: "auto",
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
    let points = null, routes = null, heatA = null, heatB = null, screen = null, scale = null, scaleB = null, pointInfo = null;
    let loading = null;  // what is being loaded for the heat panels ({text}), null when nothing
    // the matrix view ({content, values, routes}) and the overview ({content, values}) last loaded
    let matrixData = null, overviewData = null, matrixHover = -1, matrixCoords = "auto";  // "auto": the route shown (0 for the sum)
    const viewCache = { matrix: new Map(), overview: new Map() };

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
      S.image = M.images.length ? +fill(ctl.image, M.images.map((im, i) => [String(i), im.name]), String(S.image)) : -1;
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
      show("#image-ctl", M.images.length > 0 && S.underlay !== "none" && S.mode !== "overview" && !(S.mode !== "compare" && S.subject !== "mean"));
      show("#underlay-ctl", (M.images.length > 0 || M.single_images.length > 0) && S.mode !== "overview");  // no image under the panels
      show("#opacity-ctl", (M.images.length > 0 || M.single_images.length > 0) && S.mode !== "overview" && S.underlay !== "none");
      syncCompareScale();
      show("#path-ctl", S.mode === "patches");
      show("#compare-ctl", S.mode === "compare");
      scatterPanel.classList.toggle("hidden", S.mode === "compare");
      heatPanelB.classList.toggle("hidden", S.mode !== "compare");
      syncViews(show);
      help.textContent = VIEW_HELP[S.mode] || {
        patches: "Click a point or a grid cell to select that patch (shift-click adds or removes it). Drag in the scatterplot to " +
          "lasso patches, or drag across the grid for a rectangle: the heat map shows their mean attention. Switching stage keeps " +
          "the selection on the same image area.",
        blocks: "Each point is one block's attention: of one image ((image, block) points: the maps pooled to at most " +
          `${M.pool_grid || 14}×${M.pool_grid || 14} groups of patches on both axes, then embedded) or of one patch of the mean ` +
          "map ((patch, block) points). Click a point to open that map in the patch view.",
        compare: "Two maps side by side, on one colour scale or one each (\u201ccolour scales\u201d). Click either grid: the selection is linked by image area (a patch of " +
          "a coarser stage covers the patches of a finer one).",
      }[S.mode];
    }

    /** Map patches of grid (h, w) to the patches of grid (h2, w2) covering the same image area. */
    function mapSelection(ps, from, to) {
      if (from[0] === to[0] && from[1] === to[1]) return ps.slice();
      return mapCells(ps, from, to);
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
    /** What the heat panels wait for, in words (a single image's map is computed on demand). */
    function loadingText(order, block, subject) {
      return subject === "mean" ? `loading the mean map of ${block}, order ${order}…`
        : `computing the map of ${subjectName(subject)}, block ${block}, order ${order} (on demand; the first map of a block also compiles)…`;
    }
    async function load() {
      const gen = ++generation;
      busy++;
      loading = { gen, shown: false, a: loadingText(S.order, S.block, S.subject),
        b: S.mode === "compare" ? loadingText(S.B.order, S.B.block, S.B.subject) : "" };
      // a note over the dimmed old map when the answer is not immediate (no flicker on cached maps)
      const timer = setTimeout(() => { if (loading && loading.gen === gen) { loading.shown = true; showLoading(); } }, 80);
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
        const view = await loadView(sel);
        if (gen !== generation) return;
        points = pts; routes = r; heatA = a; heatB = b; lastError = null; status.textContent = "";
        if (view) { if (S.mode === "matrix") matrixData = view; else overviewData = view; }
        layoutPoints();
        draw();
      } catch (e) {
        lastError = String(e.message || e);
        status.textContent = "error: " + lastError;
      } finally {
        clearTimeout(timer);
        if (gen === generation) { loading = null; showLoading(); }
        busy--;
      }
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
    /** The image under a map: a single image's map is drawn over that image; a mean map over
     *  the image chosen in the menu; -1 for none (the "image under the map" control). */
    function underlay(subject) {
      if (S.underlay === "none") return -1;
      if (subject !== "mean") return M.single_images[+subject].image;
      return S.image;
    }
    const backdrops = new Map();
    /** Image u drawn at W×H, in colour or in grey (luminance 0.299R+0.587G+0.114B dimmed to
     *  0.25 + 0.5·lum); null until the image has loaded. */
    function backdrop(u, W, H, how) {
      const img = imageEl(u);
      if (!(img.complete && img.naturalWidth)) return null;
      const key = [u, W, H, how].join("|");
      if (!backdrops.has(key)) {
        const c = document.createElement("canvas");
        c.width = W; c.height = H;
        const x = c.getContext("2d");
        x.drawImage(img, 0, 0, W, H);
        if (how === "grey") {
          try {
            const d = x.getImageData(0, 0, W, H), px = d.data;
            for (let i = 0; i < px.length; i += 4) {
              const lum = (0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2]) / 255;
              px[i] = px[i + 1] = px[i + 2] = Math.round(255 * (0.25 + 0.5 * lum));
              px[i + 3] = 255;
            }
            x.putImageData(d, 0, 0);
          } catch (e) {  // pixels not readable (a cross-origin image): the browser's filters, nearly the same
            x.clearRect(0, 0, W, H);
            x.filter = "grayscale(1) contrast(0.5)";
            x.drawImage(img, 0, 0, W, H);
            x.filter = "none";
          }
        }
        if (backdrops.size > 24) backdrops.delete(backdrops.keys().next().value);
        backdrops.set(key, c);
      }
      return backdrops.get(key);
    }
    /** Draw one heat map on canvas cv with scale sc; returns the image under it (-1: none). */
    function drawHeat(cv, g, values, sel, subject, hover, sc) {
      const G = geom(g), n = G.h * G.w, ctx = cv.getContext("2d");
      cv.width = Math.round(G.W); cv.height = Math.round(G.H);
      ctx.clearRect(0, 0, cv.width, cv.height);
      const u = underlay(subject), back = u >= 0 ? backdrop(u, cv.width, cv.height, S.underlay) : null;
      if (back) ctx.drawImage(back, 0, 0);
      for (let q = 0; q < n; q++) {
        const c = colourOf(sc, values[q]);
        ctx.fillStyle = back ? css(c, S.opacity) : css(c);
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
      // the selection: outlined (it may be off the scale) in green on a dark rim, visible on any
      // colour of the maps; a single small cell gets a frame around it, leaving its colour visible
      const one = sel.length === 1 && G.cell < 16, o = one ? 2.5 : 0;
      for (const [colour, width] of [["rgba(0,0,0,0.8)", one ? 4 : 2.5], [sel.length > 1 ? "rgba(0,230,90,0.85)" : "#00e65a", one ? 2 : 1.5]]) {
        ctx.lineWidth = width; ctx.strokeStyle = colour;
        for (const p of sel) ctx.strokeRect((p % G.w) * G.cell + 1 - o, Math.floor(p / G.w) * G.cell + 1 - o, G.cell - 2 + 2 * o, G.cell - 2 + 2 * o);
      }
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
      cv.setAttribute("data-underlay", back ? S.underlay + ":" + u : "none");
      return back ? u : -1;
    }
    function captionFor(order, block, subject, u, sc) {
      const g = blockOf(block).grid;
      let text = (subject === "mean" ? `Mean attention over ${M.count} images` : `Attention of the single ${subjectName(subject)}`) +
        `, ${block} (${g[0]}×${g[1]}), order ${order}, ` + (S.route === "sum" ? "routes summed" : "route " + S.route) + ". ";
      if (u >= 0) {
        text += (subject === "mean" ? `Drawn over image “${M.images[u].name}” (one of the averaged images)` : "Drawn over that image") +
          (S.underlay === "grey" ? ", shown in grey (desaturated, dimmed)" : ", shown in colour") +
          `; the map at opacity ${S.opacity} (the bar drawn the same way over mid grey). `;
      } else text += "No image under the map; opaque colours. ";
      text += "Colour: " + describeScale(sc) + ". ";
      text += S.noSelf ? "The selected patches are outlined and may be off the scale (left out of it)."
        : "The scale includes the selected patches (outlined).";
      return text;
    }
    /** Side by side: whether the two panels differ in stage or in kind of map (mean vs one image). */
    function compareRule() {
      const stage = blockOf(S.block).stage !== blockOf(S.B.block).stage;
      const kind = (S.subject === "mean") !== (S.B.subject === "mean");
      return { panel: stage || kind, why: stage ? "the panels are of different stages"
        : kind ? "a mean map beside a single image's" : "same stage, same kind of map" };
    }
    const perPanel = () => S.compareScale === "auto" ? compareRule().panel : S.compareScale === "panel";
    function syncCompareScale() {
      const r = compareRule();
      S.compareScale = fill(ctl.comparescale, [["auto", `automatic: ${r.panel ? "one per panel" : "shared"} (${r.why})`],
        ["shared", "one scale for both panels"], ["panel", "one scale per panel"]], S.compareScale);
    }
    function drawHeats() {
      if (!heatA) return;
      const both = S.mode === "compare" && !!heatB;
      const selA = S.selection, selB = both ? selectionB() : [];
      if (both && !perPanel()) {
        const values = new Float32Array(heatA.length + heatB.length);
        values.set(heatA); values.set(heatB, heatA.length);
        const skip = S.noSelf ? new Set([...selA, ...selB.map((p) => p + heatA.length)]) : null;
        scale = scaleB = scaleFor(values, M.signed, skip, S.scale);
      } else {
        scale = scaleFor(heatA, M.signed, S.noSelf ? new Set(selA) : null, S.scale);
        scaleB = both ? scaleFor(heatB, M.signed, S.noSelf ? new Set(selB) : null, S.scale) : null;
      }
      const uA = drawHeat(heatCv, grid(), heatA, selA, S.subject, S.hover, scale);
      heatCv.setAttribute("data-block", S.block);
      heatCv.setAttribute("data-subject", S.subject);
      const rc = (p, g) => "(" + Math.floor(p / g[1]) + ", " + (p % g[1]) + ")";
      const selText = selA.length === 1 ? "patch " + rc(selA[0], grid()) : "mean of " + selA.length + " patches";
      heatTitle.textContent = (S.mode === "compare" ? "Left: " : "Patch view: ") + selText +
        (S.direction === "query" ? " attends to" : " is attended by");
      caption.textContent = captionFor(S.order, S.block, S.subject, uA, scale);
      drawColorbar(barCv, ticks, barNote, scale, uA >= 0);
      if (both) {
        const uB = drawHeat(heatCvB, gridB(), heatB, selB, S.B.subject, -1, scaleB), split = scaleB !== scale;
        heatCvB.setAttribute("data-block", S.B.block);
        heatTitleB.textContent = "Right: " + (selB.length === 1 ? "patch " + rc(selB[0], gridB()) : "mean of " + selB.length + " patches") +
          " (the same image area)" + (S.direction === "query" ? " attends to" : " is attended by");
        const why = S.compareScale === "auto" ? ` (automatic: ${compareRule().why})` : "";
        const scalesText = split ? "Each panel on its own colour scale" + why + ": this panel's bar is below it."
          : "One colour scale for both panels" + why + ": the bar under the left panel.";
        caption.textContent += " " + scalesText;
        captionB.textContent = captionFor(S.B.order, S.B.block, S.B.subject, uB, scaleB) + " " + scalesText;
        barB.classList.toggle("hidden", !split);
        if (split) drawColorbar(barCvB, ticksB, barNoteB, scaleB, uB >= 0);
      }
      info.textContent = "selected: " + selA.slice(0, 12).map((p) => rc(p, grid())).join(" ") + (selA.length > 12 ? " …" : "") +
        (S.hover >= 0 ? " · hover " + rc(S.hover, grid()) + " value " + fmt(heatA[S.hover]) : "") +
        ` · data range ${fmt(scale.dataLo)} … ${fmt(scale.dataHi)}`;
      showLoading();
      drawFindings();
    }
    /** A colour bar of scale sc: the colours at t = 0..1 (over mid grey at the maps' opacity when
     *  the map is over an image, so the colours are the map's), its ticks at their t, labelled
     *  where they fit, and a note saying how the scale is made. */
    function drawColorbar(cv, tk, note, sc, overImage) {
      const ctx = cv.getContext("2d"), W = cv.width, H = cv.height;
      ctx.clearRect(0, 0, W, H);
      if (overImage) { ctx.fillStyle = "rgb(128,128,128)"; ctx.fillRect(0, 0, W, H); }
      for (let x = 0; x < W; x++) {
        const c = lerp(sc.stops, x / (W - 1));
        ctx.fillStyle = overImage ? css(c, S.opacity) : css(c);
        ctx.fillRect(x, 0, 1, H);
      }
      tk.innerHTML = "";
      const n = sc.ticks.length, mid = sc.ticks.findIndex((t) => t.v === 0);
      // labels in order of importance (the ends, then 0, then the rest from the top down); a
      // label that would overlap one already placed keeps only its tick mark
      const order = [n - 1, 0].concat(mid > 0 && mid < n - 1 ? [mid] : []);
      for (let i = n - 2; i > 0; i--) if (!order.includes(i)) order.push(i);
      const placed = [];
      const spans = sc.ticks.map(() => null);
      for (const i of order) {
        const t = sc.ticks[i], x = t.pos * W, w = t.label.length * 6.5 + 6;
        const left = t.pos < 0.02 ? x : t.pos > 0.98 ? x - w : x - w / 2;
        const fits = placed.every(([a, b]) => left + w <= a || left >= b);
        if (fits) placed.push([left, left + w]);
        const at = t.pos < 0.02 ? "jm-t-start" : t.pos > 0.98 ? "jm-t-end" : "jm-t-mid";
        const s = el("span", { class: "jm-tick " + at, text: fits ? t.label : "" });
        s.style.left = (100 * t.pos) + "%";
        s.title = fmt(t.v);
        spans[i] = s;
      }
      for (const s of spans) tk.appendChild(s);
      note.textContent = sc.kind === "log" ? `log scale (symlog): decades marked; linear below 1e-3 × max (|v| ≤ ${fmt(sc.band)})`
        : sc.kind === "rank" ? "rank scale: position = quantile among the map's values; labels = the values at quantiles 0, ¼, ½, ¾, 1"
          : "linear scale";
    }
    /** The heat panels while a map is loaded or computed: the old map dimmed under a note. */
    function showLoading() {
      for (const [panel, box, text] of [[heatPanel, loadingA, loading && loading.a], [heatPanelB, loadingB, loading && loading.b]]) {
        const failed = !loading && lastError && heatA;
        const msg = failed ? "could not load this map: " + lastError : loading && loading.shown ? text : "";
        box.textContent = msg || "";
        box.classList.toggle("jm-failed", !!failed);
        panel.classList.toggle("jm-busy", !!msg);
      }
    }
    function drawFindings() {
      const f = M.findings && M.findings[S.order];
      if (!f) { findings.textContent = ""; return; }
      const b = blockOf(S.block), st = b.stage, fs = f.stages[String(st)] || {}, fb = f.blocks[S.block] || {};
      const num = (v) => v === null || v === undefined ? "–" : fmt(v);
      // findings on fewer than 16 patches (jaxmamba.attention.findings.MIN_PATCHES) mean nothing: never shown
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
        `; attention distance ${num(fs.attention_distance_norm)} of the grid diagonal; sequence locality ρ ${num(fs.sequence_locality)}. ` +
        `Block ${S.block}: distance ${num(fb.attention_distance_norm)}, locality ρ ${num(fb.sequence_locality)}.`;
    }
    function cellAt(cv, g, x, y) {
      const G = geom(g), c = Math.floor(x / G.cell), r = Math.floor(y / G.cell);
      return r >= 0 && r < G.h && c >= 0 && c < G.w ? r * G.w + c : -1;
    }

    function draw() { drawScatter(); drawHeats(); drawMatrix(); drawOverview(); }
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

    // ---------------------------------------------------------------- matrix view and blocks overview
    const MATRIX_PX = 448, MARGIN = { l: 58, t: 6, r: 14, b: 38 }, PANEL_PX = 168;  // 168: 3 px a patch at 56x56
    const VIEW_HELP = {
      matrix: "The block's mean attention matrix, rows and columns in scan order (row t: what the patch at scan position t " +
        "attends to). Per route it is lower-triangular: a patch attends only to patches scanned before it. Pooled on the server " +
        "to screen size. The selection's rows are marked in the margin; click a row to select its patches.",
      overview: "The selection (outlined) mapped by image area to every block of the model, and its mean attention there, each " +
        "panel on its own colour scale. Click a panel to open that block in the patch view.",
    };
    /** Show/hide the controls and panels of the matrix and overview modes (from syncControls). */
    function syncViews(show) {
      const matrix = S.mode === "matrix", overview = S.mode === "overview";
      matrixPanel.classList.toggle("hidden", !matrix);
      overviewPanel.classList.toggle("hidden", !overview);
      heatPanel.classList.toggle("hidden", overview);
      if (matrix || overview) { scatterPanel.classList.add("hidden"); show("#method-ctl", false); }
      if (matrix) {  // the matrix is of the mean map (per route only where the study kept route maps)
        show("#subject-ctl", false);
        if (S.subject !== "mean") S.subject = ctl.subject.value = "mean";
        if (!M.route_maps && S.route !== "sum") S.route = ctl.route.value = "sum";
        const k = orderOf(S.order).routes || 4, own = S.route === "sum" ? "0" : S.route;
        matrixCoords = fill(matrixAxes, [["auto", `the route shown (route ${own})`]].concat(
          Array.from({ length: k }, (_, r) => [String(r), "route " + r])), matrixCoords);
      }
    }
    /** What the current mode needs besides the heat map: the pooled matrix (and the scan routes
     *  that give its axes) or the overview of the selection; null in other modes. */
    async function loadView(sel) {
      if (S.mode === "matrix" || S.mode === "overview")  // said until drawn (an error replaces it)
        (S.mode === "matrix" ? matrixInfo : overviewCaption).textContent = "loading " +
          (S.mode === "matrix" ? `the pooled matrix of ${S.block}…` : "the selection's map in every block…");
      if (S.mode === "matrix") {
        const size = MATRIX_PX, coords = matrixCoords === "auto" ? undefined : matrixCoords;
        const key = [S.order, S.block, S.route, matrixCoords, size].join("|");
        const m = await cached(viewCache.matrix, key, () => source.matrix(S.order, S.block, S.route, coords, size));
        const r = await cached(cache.routes, S.order + "|" + S.block, () => source.routes(S.order, S.block));
        if (!r) throw new Error("no scan routes for " + S.order + " / " + S.block);
        return { ...m, routes: r };
      }
      if (S.mode === "overview") {
        const key = [S.order, S.block, S.subject, S.route, S.direction, sel.join(",")].join("|");
        return cached(viewCache.overview, key, () => source.overview(S.order, S.block, S.route, S.direction, sel, S.subject));
      }
      return null;
    }
    /** The matrix's geometry on its canvas: n pooled cells of pix pixels, the plot at (x0, y0). */
    function matrixGeom() {
      const c = matrixData.content, pix = Math.max(1, Math.floor(MATRIX_PX / c.n));
      return { n: c.n, f: c.f, L: c.L, pix, P: pix * c.n, x0: MARGIN.l, y0: MARGIN.t };
    }
    /** Scan position of each patch on the matrix's axes route (its inverse permutation). */
    function matrixPositions() {
      const c = matrixData.content, L = c.L, pos = new Int32Array(L);
      for (let t = 0; t < L; t++) pos[matrixData.routes[c.coords * L + t]] = t;
      return pos;
    }
    function drawMatrix() {
      if (S.mode !== "matrix" || !matrixData || matrixData.content.L !== L()) return;
      const c = matrixData.content, vals = matrixData.values, G = matrixGeom(), ctx = matrixCv.getContext("2d");
      matrixCv.width = G.x0 + G.P + MARGIN.r; matrixCv.height = G.y0 + G.P + MARGIN.b;
      ctx.clearRect(0, 0, matrixCv.width, matrixCv.height);
      const sc = scaleFor(vals, M.signed, null, S.scale);
      const img = ctx.createImageData(G.P, G.P), px = img.data;
      for (let i = 0; i < G.n; i++) for (let j = 0; j < G.n; j++) {
        const col = colourOf(sc, vals[i * G.n + j]);
        for (let y = i * G.pix; y < (i + 1) * G.pix; y++) for (let x = j * G.pix; x < (j + 1) * G.pix; x++) {
          const o = 4 * (y * G.P + x);
          px[o] = col[0]; px[o + 1] = col[1]; px[o + 2] = col[2]; px[o + 3] = 255;
        }
      }
      ctx.putImageData(img, G.x0, G.y0);
      ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.strokeRect(G.x0 - 0.5, G.y0 - 0.5, G.P + 1, G.P + 1);
      // the selection's rows: a mark in the right margin per pooled row holding a selected patch
      const pos = matrixPositions(), rows = [...new Set(S.selection.map((p) => Math.floor(pos[p] / G.f)))];
      ctx.fillStyle = "#00a03c";
      for (const i of rows) ctx.fillRect(G.x0 + G.P + 2, G.y0 + i * G.pix + G.pix / 2 - 1.5, 10, Math.max(3, G.pix - 2));
      if (rows.length <= 8) {  // a few rows: a faint line across them too
        ctx.strokeStyle = "rgba(0,160,60,0.55)";
        for (const i of rows) { ctx.beginPath(); ctx.moveTo(G.x0, G.y0 + (i + 0.5) * G.pix); ctx.lineTo(G.x0 + G.P, G.y0 + (i + 0.5) * G.pix); ctx.stroke(); }
      }
      if (matrixHover >= 0) { ctx.strokeStyle = "#000"; ctx.strokeRect(G.x0 - 0.5, G.y0 + matrixHover * G.pix - 0.5, G.P + 1, G.pix + 1); }
      // axes: scan positions 0 .. L - 1
      ctx.fillStyle = "#333"; ctx.font = "11px system-ui, sans-serif";
      const step = niceStep(c.L);
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      for (let t = 0; t < c.L; t += step) {
        const x = G.x0 + (t / G.f) * G.pix;
        ctx.fillRect(x, G.y0 + G.P, 1, 4); ctx.fillText(String(t), x, G.y0 + G.P + 5);
      }
      ctx.fillText("source scan position s", G.x0 + G.P / 2, G.y0 + G.P + 20);
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (let t = 0; t < c.L; t += step) {
        const y = G.y0 + (t / G.f) * G.pix;
        ctx.fillRect(G.x0 - 4, y, 4, 1); ctx.fillText(String(t), G.x0 - 6, y);
      }
      ctx.save(); ctx.translate(11, G.y0 + G.P / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
      ctx.fillText("query scan position t", 0, 0); ctx.restore();
      drawColorbar(matrixBar, matrixTicks, matrixBarNote, sc, false);
      const g = grid(), routeText = S.route === "sum" ? "routes summed" : "route " + S.route;
      matrixTitle.textContent = `Attention matrix of ${S.block} (${g[0]}×${g[1]}, L = ${c.L}), order ${S.order}, ${routeText}`;
      matrixCaption.textContent = `Mean over ${M.count} images. Rows and columns in the scan order of route ${c.coords} of ` +
        `${S.order}: M[t, s] = A[route${c.coords}[t], route${c.coords}[s]], row t = what the patch at scan position t attends to` +
        (S.route === "sum" ? ` (routes summed: only route ${c.coords}'s part is lower-triangular in these axes)`
          : +S.route === c.coords ? " (lower-triangular: a causal scan)" : ` (route ${S.route} in the order of route ${c.coords}: not triangular)`) +
        ". " + (c.f > 1 ? `Pooled ${c.f}×${c.f}: each pixel is the mean of ${c.f * c.f} entries (${c.n}×${c.n} pixels).`
          : `Not pooled: each pixel is one entry.`) +
        ` Green marks (right margin): the rows of the ${S.selection.length} selected patch${S.selection.length > 1 ? "es" : ""}.` +
        (sc.signed ? " Signed values: blue < 0 < red." : "");
      matrixCv.setAttribute("data-rows", rows.sort((a, b) => a - b).join(","));
      matrixInfo.textContent = matrixHover >= 0 ? matrixRowText(matrixHover) : "Click a row to select its patches (shift-click adds).";
    }
    function niceStep(L) {
      const raw = L / 5, p = Math.pow(10, Math.floor(Math.log10(raw)));
      return [1, 2, 5, 10].map((k) => k * p).find((v) => v >= raw) || raw;
    }
    /** The patches of pooled row i of the matrix (scan positions i·f .. i·f + f - 1). */
    function matrixRowPatches(i) {
      const c = matrixData.content, out = [];
      for (let t = i * c.f; t < Math.min(c.L, (i + 1) * c.f); t++) out.push(matrixData.routes[c.coords * c.L + t]);
      return out;
    }
    function matrixRowText(i) {
      const c = matrixData.content, g = grid(), ps = matrixRowPatches(i);
      const rc = (p) => "(" + Math.floor(p / g[1]) + ", " + (p % g[1]) + ")";
      return `row ${i}: scan positions ${i * c.f}–${Math.min(c.L, (i + 1) * c.f) - 1}, patches ${ps.slice(0, 8).map(rc).join(" ")}` +
        (ps.length > 8 ? " …" : "");
    }
    function matrixRowAt(ev) {
      if (!matrixData) return -1;
      const [, y] = pos(ev, matrixCv), G = matrixGeom(), i = Math.floor((y - G.y0) / G.pix);
      return i >= 0 && i < G.n ? i : -1;
    }
    matrixAxes.addEventListener("change", () => { matrixCoords = matrixAxes.value; load(); });
    matrixCv.addEventListener("mousemove", (ev) => { const i = matrixRowAt(ev); if (i !== matrixHover) { matrixHover = i; drawMatrix(); } });
    matrixCv.addEventListener("mouseleave", () => { if (matrixHover >= 0) { matrixHover = -1; drawMatrix(); } });
    matrixCv.addEventListener("click", (ev) => { const i = matrixRowAt(ev); if (i >= 0) select(matrixRowPatches(i), ev.shiftKey); });

    function drawOverview() {
      if (S.mode !== "overview" || !overviewData) return;
      const parts = overviewData.content.blocks, vals = overviewData.values;
      const from = S.anchor ? S.anchor : { grid: grid(), sel: S.selection };
      overviewBox.innerHTML = "";
      for (const st of [...new Set(parts.map((b) => b.stage))]) {
        const rowEl = el("div", { class: "jm-ov-row" }, el("div", { class: "jm-ov-stage", text: "stage " + st }));
        for (const b of parts.filter((x) => x.stage === st)) {
          const v = vals.subarray(b.offset, b.offset + b.length), sel = mapCells(from.sel, from.grid, b.grid);
          const sc = scaleFor(v, M.signed, S.noSelf ? new Set(sel) : null, S.scale);
          const cell = PANEL_PX / Math.max(b.grid[0], b.grid[1]);
          const cv = el("canvas", { class: "jm-ov-map", width: Math.round(cell * b.grid[1]), height: Math.round(cell * b.grid[0]),
            "data-block": b.name, "data-selected": sel.join(","), title: "open " + b.name + " in the patch view" });
          const ctx = cv.getContext("2d");
          for (let q = 0; q < b.length; q++) {
            const r = Math.floor(q / b.grid[1]), c = q % b.grid[1], x0 = Math.round(c * cell), y0 = Math.round(r * cell);
            ctx.fillStyle = css(colourOf(sc, v[q]));
            ctx.fillRect(x0, y0, Math.round((c + 1) * cell) - x0, Math.round((r + 1) * cell) - y0);
          }
          outlineCells(ctx, sel, b.grid, cell);
          cv.addEventListener("click", () => openBlock(b.name));
          const here = b.name === S.block ? " (selected here)" : "";
          rowEl.appendChild(el("figure", { class: "jm-ov-panel" + (here ? " jm-ov-here" : "") },
            el("figcaption", { text: `${b.name} · ${b.grid[0]}×${b.grid[1]}` }), cv,
            el("div", { class: "jm-ov-scale", text: `${sc.kind} scale, ${sc.signed ? "±" : "0 … "}${fmt(sc.hi)}` })));
        }
        overviewBox.appendChild(rowEl);
      }
      const g = grid(), n = S.selection.length;
      overviewTitle.textContent = `The selection in every block: order ${S.order}, ` + (S.route === "sum" ? "routes summed" : "route " + S.route);
      overviewCaption.textContent = `${n === 1 ? "Patch (" + Math.floor(S.selection[0] / g[1]) + ", " + (S.selection[0] % g[1]) + ")" : n + " patches"} ` +
        `of ${S.block} (${g[0]}×${g[1]}), mapped by image area to each block (outlined): ` +
        (S.direction === "query" ? "what it attends to (mean row)" : "what attends to it (mean column)") + `, ${subjectName(S.subject)}. ` +
        "Each panel on its own colour scale (its largest |value| under it: scales differ by orders of magnitude between blocks); " +
        "green frame: the block the selection was made in; no image under the panels. " +
        "Click a panel to open that block in the patch view.";
    }
    /** The selected cells outlined, black under green so that it shows on any colour; cells of a
     *  few pixels (a 56x56 panel) get a frame around them, 3 px out. */
    function outlineCells(ctx, sel, g, cell) {
      const pad = cell < 8 ? 3 : 0;
      for (const [colour, width] of [["#000", 3], ["#00e060", 1.5]]) {
        ctx.strokeStyle = colour; ctx.lineWidth = width;
        for (const p of sel) ctx.strokeRect((p % g[1]) * cell + 0.5 - pad, Math.floor(p / g[1]) * cell + 0.5 - pad, cell - 1 + 2 * pad, cell - 1 + 2 * pad);
      }
    }
    function openBlock(name) {
      const prev = grid();
      S.mode = "patches"; S.block = name; S.picked = null;
      return refresh(prev);
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
    on(ctl.scale, (t) => { S.scale = t.value; });
    on(ctl.underlay, (t) => { S.underlay = t.value; });
    on(ctl.opacity, (t) => { S.opacity = +t.value; });
    on(ctl.comparescale, (t) => { S.compareScale = t.value; });
    on(ctl.orderB, (t) => { S.B.order = t.value; });
    on(ctl.blockB, (t) => { S.B.block = t.value; });
    on(ctl.subjectB, (t) => { S.B.subject = t.value; });
    ctl.reset.addEventListener("click", () => select([centreOf(grid())], false));

    // ---------------------------------------------------------------- start
    const publicScale = (sc) => ({ kind: sc.kind, signed: sc.signed, lo: sc.lo, hi: sc.hi, band: sc.band,
      dataLo: sc.dataLo, dataHi: sc.dataHi, ticks: sc.ticks.map((t) => ({ v: t.v, pos: t.pos, label: t.label })) });
    const api = {
      ready: false, source: source.kind, state: S,
      get busy() { return busy; }, get error() { return lastError; },
      meta: () => M,
      select: (ps) => select(ps, false),
      pick: (i) => pick(i),
      heatValues: () => heatA ? Array.from(heatA) : null,
      heatValuesB: () => heatB ? Array.from(heatB) : null,
      scale: () => scale && publicScale(scale),
      scaleB: () => scaleB && publicScale(scaleB),
      perPanel: () => perPanel(),
      colourAt: (v, panel) => { const c = colourOf(panel === "B" ? scaleB : scale, v); return [c[0] | 0, c[1] | 0, c[2] | 0]; },
      /** The drawn colour at the centre of patch p's cell on canvas `id` ("heat", "heatB"). */
      pixelAt: (id, p) => {
        const cv = root.querySelector("#" + id), G = geom(id === "heatB" ? gridB() : grid());
        const x = Math.floor((p % G.w + 0.5) * G.cell), y = Math.floor((Math.floor(p / G.w) + 0.5) * G.cell);
        const d = cv.getContext("2d").getImageData(x, y, 1, 1).data;
        return [d[0], d[1], d[2]];
      },
      get loading() { return !!loading; },
      pointCount: () => (points ? points.length / 2 : 0),
      pointPosition: (p) => ({ x: screen[2 * p] * scatterCv.getBoundingClientRect().width / scatterCv.width,
        y: screen[2 * p + 1] * scatterCv.getBoundingClientRect().height / scatterCv.height }),
      matrix: () => matrixData && { ...matrixData.content, values: Array.from(matrixData.values) },
      overview: () => overviewData && { ...overviewData.content, values: Array.from(overviewData.values) },
      openBlock: (name) => openBlock(name),
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
        (M.single_images.length ? ` · ${M.single_images.length} single image${M.single_images.length > 1 ? "s" : ""}` : "") +
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
  return { mount, httpSource, embeddedSource, widgetSource, decodeMatrix, fmt, scaleFor, poolMatrix, mapCells };
})();
