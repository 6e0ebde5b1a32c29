/* The data sources: the local server (HTTP), the offline file (data embedded in the page) and
 * the notebook widget (widget messages); each a Source (types.js). */

/** How long a request may take before the page shows an error instead of waiting: a single
 *  image's map is computed on demand (seconds; longer on the first, compiling, request). */
const REQUEST_TIMEOUT_MS = 120000;
/** @param {number} ms */
const timeoutError = (ms) => new Error(`no answer within ${ms / 1000} s; try again`);

/** The local server: GET/POST /api/<method> on the page's own origin (relative URLs), each
 *  request given up after timeoutMs; study i > 0: every request for companion i (`study`).
 * @param {string} base  the API's URL ("api")
 * @param {number} [timeoutMs]
 * @param {number} [study]
 * @returns {Source}
 */
function httpSource(base, timeoutMs = REQUEST_TIMEOUT_MS, study = 0) {
  const which = study ? { study: String(study) } : {};
  /** @type {(args: Object<string, any>) => URLSearchParams} */
  const query = (args) => new URLSearchParams(Object.entries({ ...args, ...which }).filter(([, v]) => v !== undefined && v !== null));
  /** @type {(m: string, args?: Object<string, any>) => string} */
  const endpoint = (m, args) => base + "/" + m + (args ? "?" + query(args) : "");  // no "undefined" arguments
  /** @param {Response} r */
  async function check(r) {
    if (!r.ok) { let msg = r.statusText; try { msg = (await r.json()).error; } catch (e) { /* text */ } throw new Error(msg); }
    return r;
  }
  /**
   * fetch, checked, and its body read, within timeoutMs (an error after it).
   * @template T
   * @param {string} url
   * @param {(r: Response) => Promise<T>} read
   * @param {RequestInit} [init]
   * @returns {Promise<T>}
   */
  async function request(url, read, init = {}) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    try {
      return await read(await check(await fetch(url, { ...init, credentials: "same-origin", signal: ctl.signal })));
    } catch (e) {
      throw ctl.signal.aborted ? timeoutError(timeoutMs) : e;
    } finally { clearTimeout(timer); }
  }
  const floats = async (/** @type {Response} */ r) => new Float32Array(await r.arrayBuffer());
  const described = async (/** @type {Response} */ r) => ({ content: JSON.parse(r.headers.get("X-Array") || "{}"), values: await floats(r) });
  return {
    kind: "http",
    meta: () => request(endpoint("meta"), (r) => r.json()),
    coords: (order, block, method, subject) => request(endpoint("coords", { order, block, method, subject }), floats),
    routes: (order, block) => request(endpoint("routes", { order, block }), async (r) => new Int32Array(await r.arrayBuffer())),
    points: (kind, order, stage, method) => request(endpoint("points", { kind, order, stage, method }), floats),
    heat: (order, block, route, direction, patches, subject) =>
      request(endpoint("heat"), floats, { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ order, block, route, direction, patches, subject, ...which }) }),
    matrix: (order, block, route, coords, size) => request(endpoint("matrix", { order, block, route, coords, size }), described),
    overview: (order, block, route, direction, patches, subject) =>
      request(endpoint("overview"), described, { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ order, block, route, direction, patches, subject, ...which }) }),
    imageUrl: (i) => endpoint("image", { index: i }),
    study: (i) => httpSource(base, timeoutMs, i),
  };
}

/**
 * The offline file: every map of a small subset embedded (encoded) in the page; its companion
 * studies' maps under `D.companions` (each with its own data, meta and joint embeddings, the
 * images of the page: they show the same images).
 * @param {Object<string, any>} D  the data of jaxmamba.views.export.explorer_data
 * @returns {Source}
 */
function embeddedSource(D) {
  /** @type {Map<number, Source>} */
  const companions = new Map();
  /** @type {Map<string, Float32Array>} */
  const cache = new Map();
  /** @type {(order: string, block: string) => Object<string, any>} */
  const entry = (order, block) => {
    const e = D.data[order] && D.data[order][block];
    if (!e) throw new Error("no data for " + order + " / " + block);
    return e;
  };
  /** The tokens of an entry: its patches h·w, and its class token (a Vim layer's: cls = h·w).
   * @type {(e: Object<string, any>) => number} */
  const tokens = (e) => e.h * e.w + (e.cls === undefined || e.cls === null ? 0 : 1);
  /** @type {(order: string, block: string, route: string) => Float32Array} */
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
    meta: async () => /** @type {Meta} */ (D.meta),  // built by jaxmamba.views.protocol.page_meta
    coords: async (order, block, method) => Float32Array.from(entry(order, block).coords[method].flat()),
    routes: async (order, block) => { const r = entry(order, block).routes; return r ? Int32Array.from(r.flat()) : null; },
    points: async (kind, order, stage, method) => {
      const p = kind === "joint" && D.joint && D.joint[order] && D.joint[order][stage];
      if (!p || !p[method]) throw new Error("this file holds no " + kind + " embedding of stage " + stage);
      return Float32Array.from(p[method].flat());
    },
    heat: async (order, block, route, direction, patches) => {
      const e = entry(order, block);
      return meanRows(matrix(order, block, route), tokens(e), patches, direction);
    },
    matrix: async (order, block, route, coords, size) => {
      const e = entry(order, block), L = tokens(e);
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
      /** @type {Object<string, any>[]} */
      const parts = [];
      /** @type {Float32Array[]} */
      const chunks = [];
      const from = entry(order, block);
      let offset = 0;
      for (const [name, e] of Object.entries(D.data[order])) {
        const L = tokens(e), sel = mapCells(patches, [from.h, from.w], [e.h, e.w], from.cls ?? null, e.cls ?? null);
        chunks.push(meanRows(matrix(order, name, route), L, sel, direction));
        parts.push({ name, stage: e.stage, grid: [e.h, e.w], cls: e.cls ?? null, offset, length: L });
        offset += L;
      }
      const values = new Float32Array(offset);
      chunks.forEach((c, i) => values.set(c, parts[i].offset));
      return { content: { dtype: "float32", shape: [offset], blocks: parts }, values };
    },
    imageUrl: (i) => D.images[i].src,
    rowSync: (order, block, route, p) => { const e = entry(order, block), n = tokens(e); return matrix(order, block, route).slice(p * n, (p + 1) * n); },
    study: (i) => {
      const c = (D.companions || []).find((/** @type {Object<string, any>} */ x) => x.meta.index === i);
      if (!c) throw new Error("this file holds no companion study " + i);
      if (!companions.has(i)) companions.set(i, embeddedSource({ ...c, images: D.images }));
      return companions.get(i);
    },
  };
}

/** The notebook widget (anywidget): requests and answers as widget messages; a request not
 *  answered within timeoutMs is given up with an error. One listener for the study and its
 *  companions (`study(i)`: the same messages, each request's `study` i).
 * @param {{on: (name: string, f: (msg: any, buffers: DataView[]) => void) => void,
 *   send: (msg: Object<string, any>) => void}} model  the anywidget model
 * @param {number} [timeoutMs]
 * @returns {Source}
 */
function widgetSource(model, timeoutMs = REQUEST_TIMEOUT_MS) {
  let next = 1;
  /** @typedef {{content: any, bytes: ArrayBuffer}} Answer */
  /** @type {Map<number, {resolve: (a: Answer) => void, reject: (e: Error) => void, timer: number}>} */
  const pending = new Map();
  model.on("msg:custom", (msg, buffers) => {
    if (!msg || msg.kind !== "jm-answer" || !pending.has(msg.id)) return;
    const { resolve, reject, timer } = pending.get(msg.id);
    pending.delete(msg.id);
    clearTimeout(timer);
    if (msg.error) { reject(new Error(msg.error)); return; }
    const dv = buffers && buffers[0];
    resolve({ content: msg.content, bytes: dv ? /** @type {ArrayBuffer} */ (dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength)) : null });
  });
  /** @type {(method: string, args?: Object<string, any>) => Promise<Answer>} */
  const ask = (method, args) => new Promise((resolve, reject) => {
    const id = next++;
    const timer = setTimeout(() => { if (pending.delete(id)) reject(timeoutError(timeoutMs)); }, timeoutMs);
    pending.set(id, { resolve, reject, timer });
    model.send({ kind: "jm-request", id, method, args: args || {} });
  });
  /** @type {Map<number, Source>} */
  const sources = new Map();
  /** @param {number} study @returns {Source} */
  const sourceFor = (study) => {
    if (sources.has(study)) return sources.get(study);
    /** @type {(method: string, args: Object<string, any>) => Promise<Answer>} */
    const askS = (method, args) => ask(method, study ? { ...args, study } : args);
    /** @type {Map<number, Promise<string>>} */
    const urls = new Map();
    /** @type {Source} */
    const src = {
      kind: "widget",
      meta: async () => (await ask("meta")).content,
      coords: async (order, block, method, subject) => new Float32Array((await askS("coords", { order, block, method, subject })).bytes),
      routes: async (order, block) => new Int32Array((await askS("routes", { order, block })).bytes),
      points: async (kind, order, stage, method) => new Float32Array((await askS("points", { kind, order, stage, method })).bytes),
      heat: async (order, block, route, direction, patches, subject) =>
        new Float32Array((await askS("heat", { order, block, route, direction, patches, subject })).bytes),
      matrix: async (order, block, route, coords, size) => {
        const a = await askS("matrix", { order, block, route, coords, size });
        return { content: a.content, values: new Float32Array(a.bytes) };
      },
      overview: async (order, block, route, direction, patches, subject) => {
        const a = await askS("overview", { order, block, route, direction, patches, subject });
        return { content: a.content, values: new Float32Array(a.bytes) };
      },
      imageUrl: (i) => {
        if (!urls.has(i)) urls.set(i, askS("image", { index: i }).then((a) => URL.createObjectURL(new Blob([a.bytes], { type: "image/png" }))));
        return urls.get(i);
      },
      study: sourceFor,
    };
    sources.set(study, src);
    return src;
  };
  return sourceFor(0);
}
