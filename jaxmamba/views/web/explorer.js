/* The explorer: mount() builds the page on an element with a data source; state changes go
 * through update(), which loads what the new state needs and calls render(), the one drawing
 * path. The test hooks are `element.explorer` (and `window.explorer` for the first one).
 *
 *   JM.mount(element, JM.httpSource("api"))        the local server (jaxmamba serve)
 *   JM.mount(element, JM.embeddedSource(data))     the offline single file (jaxmamba export)
 *   JM.mount(element, JM.widgetSource(model))      the notebook widget (jaxmamba.show)
 */

/** The keys of the state that only move the pointer's marks (drawn again, nothing loaded). */
const POINTER_KEYS = ["hover", "matrixHover"];
/** The keys of a selection made by hand (drawn at once, then its maps loaded). */
const SELECTION_KEYS = ["selection", "anchor"];

/**
 * The one way the state changes: apply `changes`, then draw. A new selection is drawn at once
 * (its outline) and its maps are loaded; any other change (a control) is first made consistent
 * with the study (syncControls, the selection kept on the image area), then loaded and drawn.
 * Pointer marks (hover) are only drawn.
 * @param {App} app
 * @param {Partial<State>} changes
 * @returns {Promise<void>}
 */
function update(app, changes) {
  const S = app.state, prevGrid = S.block ? grid(app) : null, prevCls = S.block ? clsOf(app, S.block) : null;
  Object.assign(S, changes);
  const keys = Object.keys(changes);
  if (keys.every((k) => POINTER_KEYS.includes(k))) { render(app); return Promise.resolve(); }
  if (keys.every((k) => SELECTION_KEYS.includes(k))) { render(app); return load(app); }
  syncControls(app);
  keepSelection(app, keys.includes("selection") ? null : prevGrid, prevCls);
  return load(app);
}

/** Draw everything from the state and what is loaded. @param {App} app */
function render(app) {
  drawScatter(app);
  if (app.data.heatA) { drawHeats(app); showLoading(app); drawFindings(app); }
  drawMatrix(app);
  drawOverview(app);
}

/**
 * A selection made by hand: patches `ps` of the block shown (shift: added or removed), or of
 * another grid (`from`: the right panel's), anchored for the other grids. From the right panel
 * `ps` may be empty: its class token has nothing on a grid without one.
 * @param {App} app
 * @param {number[]} ps
 * @param {boolean} additive
 * @param {Anchor} [from]
 * @returns {Promise<void>}
 */
function select(app, ps, additive, from) {
  const S = app.state;
  if (!ps.length && !(from && from.sel.length)) { render(app); return Promise.resolve(); }
  let selection = [...new Set(ps)];
  if (additive) {
    const s = new Set(S.selection);
    if (ps.length === 1 && s.has(ps[0])) s.delete(ps[0]); else for (const p of ps) s.add(p);
    selection = s.size ? [...s] : S.selection;
  }
  const anchor = from ? { grid: from.grid, sel: from.sel, cls: from.cls }
    : { grid: grid(app), sel: selection.slice(), cls: clsOf(app, S.block) };
  return update(app, { selection, anchor });
}

/** A click on point i of the blocks mode opens that map in the patch view.
 * @param {App} app
 * @param {number} i
 * @returns {Promise<void>}
 */
function pick(app, i) {
  const { block, item } = describePoints(app).of(i);
  if (app.state.points === "interblock") return update(app, { picked: i, block, subject: String(item) });
  return update(app, { picked: i, block, subject: "mean", selection: [item], anchor: null });
}

/** Open block `name` in the patch view (a click on an overview panel).
 * @param {App} app
 * @param {string} name
 * @returns {Promise<void>}
 */
function openBlock(app, name) {
  return update(app, { mode: "patches", block: name, picked: null });
}

/**
 * A map's promise, cached by key (at most 300 a cache; a failed one is forgotten).
 * @template T
 * @param {Map<string, Promise<any>>} map
 * @param {string} key
 * @param {() => Promise<T>} make
 * @returns {Promise<T>}
 */
async function cached(map, key, make) {
  if (!map.has(key)) {
    const p = make();
    map.set(key, p);
    p.catch(() => map.delete(key));
    if (map.size > 300) map.delete(map.keys().next().value);
  }
  return map.get(key);
}

/** A map's mean row of selection `sel` (an empty selection: a map of NaN, nothing selected).
 * @param {App} app @param {string} order @param {string} block @param {string} subject @param {number[]} sel
 * @param {string} [route]  default: the route shown */
function heatFor(app, order, block, subject, sel, route = app.state.route) {
  const S = app.state, key = [order, block, subject, route, S.direction, sel.join(",")].join("|");
  if (!sel.length) {
    const b = blockOf(app, block), n = b.grid[0] * b.grid[1] + (clsOf(app, block) === null ? 0 : 1);
    return Promise.resolve(new Float32Array(n).fill(NaN));
  }
  return cached(app.caches.heat, key, () => app.source.heat(order, block, route, S.direction, sel, subject));
}

/** @param {App} app @param {string} order @param {string} block */
function routesFor(app, order, block) {
  return cached(app.caches.routes, order + "|" + block, () => app.source.routes(order, block));
}

/** What the heat panels wait for, in words (a single image's map is computed on demand).
 * @param {App} app @param {string} order @param {string} block @param {string} subject
 * @returns {string}
 */
function loadingText(app, order, block, subject) {
  return subject === "mean" ? `loading the mean map of ${block}, order ${order}…`
    : `computing the map of ${subjectName(app, subject)}, block ${block}, order ${order} (on demand; the first map of a block also compiles)…`;
}

/** What the current mode needs besides the heat map: the pooled matrix (and the scan routes
 *  that give its axes) or the overview of the selection; null in other modes.
 * @param {App} app
 * @param {number[]} sel
 * @returns {Promise<MatrixData|Described|null>}
 */
async function loadView(app, sel) {
  const S = app.state, ui = app.ui, source = app.source;
  if (S.mode === "matrix" || S.mode === "overview")  // said until drawn (an error replaces it)
    (S.mode === "matrix" ? ui.matrixInfo : ui.overviewCaption).textContent = "loading " +
      (S.mode === "matrix" ? `the pooled matrix of ${S.block}…` : "the selection's map in every block…");
  if (S.mode === "matrix") {
    const size = MATRIX_PX, coords = S.matrixCoords === "auto" ? undefined : S.matrixCoords;
    const key = [S.order, S.block, S.route, S.matrixCoords, size].join("|");
    const m = await cached(app.caches.matrix, key, () => source.matrix(S.order, S.block, S.route, coords, size));
    const r = await routesFor(app, S.order, S.block);
    if (!r) throw new Error("no scan routes for " + S.order + " / " + S.block);
    return { ...m, routes: r, cls: clsOf(app, S.block) };
  }
  if (S.mode === "overview") {
    const key = [S.order, S.block, S.subject, S.route, S.direction, sel.join(",")].join("|");
    return cached(app.caches.overview, key, () => source.overview(S.order, S.block, S.route, S.direction, sel, S.subject));
  }
  return null;
}

/**
 * Load what the state asks for (the newest call wins), then render; an error is shown in the
 * status line and on the heat panels.
 * @param {App} app
 */
async function load(app) {
  const S = app.state, ui = app.ui, run = app.run, source = app.source;
  const gen = ++run.generation;
  run.busy++;
  run.loading = { gen, shown: false, a: loadingText(app, S.order, S.block, S.subject),
    b: S.mode === "compare" ? loadingText(viewB(app), S.B.order, S.B.block, S.B.subject) : "" };
  // a note over the dimmed old map when the answer is not immediate (no flicker on cached maps)
  const timer = setTimeout(() => { if (run.loading && run.loading.gen === gen) { run.loading.shown = true; showLoading(app); } }, 80);
  try {
    const sel = S.selection.slice().sort((x, y) => x - y);
    let pts = null, r = null;
    if (S.mode === "patches") {
      const subj = S.subject, m = S.method;
      pts = await cached(app.caches.coords, [S.order, S.block, m, subj].join("|"), () => source.coords(S.order, S.block, m, subj));
      if (S.colorBy === "scan" || S.showPath) r = await routesFor(app, S.order, S.block);
    } else if (S.mode === "blocks") {
      const st = blockOf(app, S.block).stage;
      pts = await cached(app.caches.points, [S.points, S.order, st, S.method].join("|"), () => source.points(S.points, S.order, st, S.method));
    }
    const a = await heatFor(app, S.order, S.block, S.subject, sel);
    const b = S.mode === "compare" ? await heatFor(viewB(app), S.B.order, S.B.block, S.B.subject, selectionB(app), routeB(app)) : null;
    const view = await loadView(app, sel);
    if (gen !== run.generation) return;
    const D = app.data;
    D.points = pts; D.routes = r; D.heatA = a; D.heatB = b; D.screen = layoutPoints(pts);
    if (view) { if (S.mode === "matrix") D.matrix = /** @type {MatrixData} */ (view); else D.overview = view; }
    run.lastError = null; ui.status.textContent = "";
    render(app);
  } catch (e) {
    run.lastError = String(e.message || e);
    ui.status.textContent = "error: " + run.lastError;
  } finally {
    clearTimeout(timer);
    if (gen === run.generation) { run.loading = null; showLoading(app); }
    run.busy--;
  }
}

/** The subtitle: the images averaged, the models, the single images. @param {Meta} M @returns {string} */
function subtitle(M) {
  const short = (/** @type {OrderMeta} */ o) => o.model_digest ? o.model_digest.slice(0, 8) : null;
  const models = [...new Set(M.orders.map((o) => o.model_digest || o.model).filter(Boolean))];
  const kinds = [...new Set(M.orders.map((o) => o.model).filter(Boolean))];
  return (M.count ? `Mean hidden attention over ${M.count} images` : "Hidden attention") +
    (models.length === 1 ? " · model: " + (kinds[0] || "") + (short(M.orders[0]) ? ` (${short(M.orders[0])}), every order` : "")
      : models.length > 1 ? ` · ${models.length} models (${kinds.join("; ")}), one trained per order: ` +
        M.orders.map((o) => `${o.name} ${short(o) || o.model}`).join(", ") : "") +
    (M.single_images.length ? ` · ${M.single_images.length} single image${M.single_images.length > 1 ? "s" : ""}` : "") +
    (M.signed ? " · signed maps (diverging colour scale)" : "") + (M.synthetic ? " · SYNTHETIC planted maps" : "");
}

/**
 * The companion studies under the title: each one's model and a button that shows it beside
 * this study (side by side, the right panel on it); companions that failed to open, and why.
 * Nothing for a study without companions.
 * @param {App} app
 */
function showCompanions(app) {
  const M = app.meta, box = app.ui.companions, list = M.companions || [], errors = M.companion_errors || [];
  box.innerHTML = "";
  box.classList.toggle("hidden", !list.length && !errors.length);
  for (const c of list) {
    const button = el("button", { type: "button", class: "jm-companion", "data-study": c.index, text: "show it side by side" });
    button.addEventListener("click", () => update(app, { mode: "compare", B: { ...app.state.B, study: c.index, order: "", block: "" }, anchor: null }));
    box.appendChild(el("div", {}, `Also shown beside it: ${studyLabel(app, c.index)} (companion study “${c.folder}”, ` +
      `${c.same_images ? "the same images" : "NOT the same images"}): view “Side by side”, right panel’s study. `, button));
  }
  for (const e of errors) box.appendChild(el("div", { class: "jm-failed" }, `Companion study “${e.name}” could not be opened: ${e.error}`));
}

/**
 * Mount the explorer on `root`, its data from `source`.
 * @param {HTMLElement} root
 * @param {Source} source
 * @returns {() => void}  unmount
 */
function mount(root, source) {
  const ui = layout(root);
  initControls(ui);
  /** @type {App} */
  const app = {
    root, source, meta: null, state: initialState(), ui,
    data: { points: null, routes: null, heatA: null, heatB: null, screen: null, scale: null, scaleB: null, matrix: null, overview: null },
    run: { busy: 0, generation: 0, lastError: null, loading: null },
    pointer: { down: null, lasso: null, rect: null },
    caches: { coords: new Map(), routes: new Map(), heat: new Map(), points: new Map(), matrix: new Map(), overview: new Map() },
    images: new Map(), backdrops: new Map(), views: new Map(),
  };
  listen(app);
  const api = testHooks(app);
  /** @type {any} */ (root).explorer = api;
  if (!(/** @type {any} */ (window).explorer)) /** @type {any} */ (window).explorer = api;
  app.run.busy++;
  source.meta().then((meta) => {
    const M = app.meta = meta;
    M.single_images = M.single_images || [];
    M.stages = M.stages || [];
    ui.title.textContent = M.title || "jaxmamba attention explorer";
    ui.sub.textContent = subtitle(M);
    showCompanions(app);
    return update(app, { order: M.orders[0].name, block: M.orders[0].blocks[0], method: M.methods[0], image: M.images.length ? 0 : -1 });
  }).then(() => { api.ready = true; }).catch((e) => { app.run.lastError = String(e.message || e); ui.status.textContent = "error: " + app.run.lastError; })
    .finally(() => { app.run.busy--; });
  return () => { root.innerHTML = ""; };
}

/** The name space the page's script defines (`JM`): mount, the sources, and the arithmetic the
 *  tests check against the server's. */
const EXPORTS = { mount, httpSource, embeddedSource, widgetSource, decodeMatrix, fmt, scaleFor, poolMatrix, mapCells };
