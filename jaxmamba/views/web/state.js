/* The app's state (one object, types.js State) and what it says read with the study's meta:
 * the block shown, its grid, the selection on another grid. */

/** @returns {State} the state before the meta is known (mount sets order, block, method) */
function initialState() {
  return { mode: "patches", order: "", block: "", subject: "mean", route: "sum", method: "", points: "interblock",
    colorBy: "row", direction: "query", image: -1, showPath: false, noSelf: true, selection: [], hover: -1,
    scale: "log", underlay: "grey", opacity: 0.75, compareScale: "auto",
    B: { study: 0, order: "", block: "", subject: "mean" }, picked: null, anchor: null,
    matrixCoords: "auto", matrixHover: -1 };
}

/** @param {App} app @param {string} name @returns {BlockMeta} */
const blockOf = (app, name) => app.meta.blocks.find((b) => b.name === name);
/** @param {App} app @param {string} name @returns {OrderMeta} */
const orderOf = (app, name) => app.meta.orders.find((o) => o.name === name);
/** @param {App} app @param {number|string} st @returns {StageMeta} */
const stageOf = (app, st) => app.meta.stages.find((x) => String(x.stage) === String(st));
/** The grid (h, w) of the block shown. @param {App} app @returns {number[]} */
const grid = (app) => blockOf(app, app.state.block).grid;
/**
 * The app as seen from study i: itself (i = 0), or companion i's metadata, source and caches
 * (the same state, data and elements): every function of a panel reads its study through it.
 * @param {App} app
 * @param {number} i
 * @returns {App}
 */
function studyView(app, i) {
  if (!i) return app;
  if (!app.views.has(i)) {
    const meta = (app.meta.companions || []).find((c) => c.index === i);
    if (!meta || !app.source.study) throw new Error("the page has no companion study " + i);
    meta.single_images = meta.single_images || [];
    meta.stages = meta.stages || [];
    app.views.set(i, { ...app, home: app, meta, source: app.source.study(i), images: new Map(), backdrops: new Map(),
      caches: { coords: new Map(), routes: new Map(), heat: new Map(), points: new Map(), matrix: new Map(), overview: new Map() } });
  }
  return app.views.get(i);
}
/** The right panel's study (side by side). @param {App} app @returns {App} */
const viewB = (app) => studyView(app, app.state.B.study);
/** The grid of the right panel's block (side by side). @param {App} app @returns {number[]} */
const gridB = (app) => blockOf(viewB(app), app.state.B.block).grid;
/** A model's short name: its description up to the first comma ("vim_small Vim"), a VMamba
 *  model's said to be one ("VMamba custom v05_noz").
 * @param {App} app @param {string} order @returns {string} */
const modelShort = (app, order) => {
  const m = orderOf(app, order).model, short = m ? m.split(",")[0] : "";
  return !short || isVimOrder(app, order) || /vmamba/i.test(short) ? short : "VMamba " + short;
};
/** Study i in words: "this study" or "companion vim — its title · its model".
 * @param {App} app @param {number} i @returns {string} */
function studyLabel(app, i) {
  const v = studyView(app, i), M = v.meta, model = modelShort(v, M.orders[0].name), raw = (M.orders[0].model || "").split(",")[0];
  // a study without a title is called "jaxmamba" (or after its model): its model names it
  const what = [M.title && M.title !== "jaxmamba" && !(raw && M.title.includes(raw)) ? M.title : "", model].filter(Boolean).join(" · ");
  if (!i) return "this study" + (app.meta.companions && what ? " — " + what : "");
  return `companion ${/** @type {CompanionMeta} */ (M).folder}` + (what ? " — " + what : "");
}
/** Whether an order's maps are a Vim model's (its blocks hold a class token).
 * @param {App} app @param {string} order @returns {boolean} */
const isVimOrder = (app, order) => { const o = orderOf(app, order); return !!o && o.blocks.some((n) => clsOf(app, n) !== null); };
/** Route r of an order in words: a Vim order's route 0 / 1 are its "forward" / "backward" scans.
 * @param {App} app @param {string} order @param {number|string} r @returns {string} */
const routeName = (app, order, r) => isVimOrder(app, order) ? (+r === 0 ? "forward" : +r === 1 ? "backward" : "route " + r) : "route " + r;
/** The route shown in words: the mean of a Vim layer is its own merge, ½(forward + backward);
 *  a VMamba block's, the sum of its routes.
 * @param {App} app @param {string} order @param {string} route @returns {string} */
const routeText = (app, order, route) => route !== "sum" ? routeName(app, order, route)
  : isVimOrder(app, order) ? "directions averaged (the layer's merge)" : "routes summed";
/** The right panel's route: the one shown on the left when its study has it, else the routes'
 *  sum (its merge). @param {App} app @returns {string} */
function routeB(app) {
  const S = app.state, v = viewB(app), o = orderOf(v, S.B.order);
  if (S.route === "sum" || !o) return "sum";
  const has = (v.meta.route_maps || S.B.subject !== "mean") && +S.route < (o.routes || 0);
  return has ? S.route : "sum";
}
/** The number of patches of the block shown. @param {App} app @returns {number} */
const patchCount = (app) => grid(app)[0] * grid(app)[1];
/** The class token's position in block `name`'s maps (a Vim layer's, class-last: h·w, after
 *  the grid's patches), null for a block without one.
 * @param {App} app @param {string} name @returns {number|null} */
const clsOf = (app, name) => { const b = blockOf(app, name), c = b && b.cls; return c === undefined || c === null ? null : c; };
/** The number of tokens of the block shown: its patches and its class token (if any): L.
 * @param {App} app @returns {number} */
const tokenCount = (app) => patchCount(app) + (clsOf(app, app.state.block) === null ? 0 : 1);
/** Token p in words: "the class token" or "patch (row, col)".
 * @param {number} p @param {number[]} g @param {number|null} cls @returns {string} */
const tokenName = (p, g, cls) => p === cls ? "the class token" : "patch " + rowCol(p, g);
/** Tokens `sel` in words: one token's name, or how many (and whether the class token is one).
 * @param {number[]} sel @param {number[]} g @param {number|null} cls @returns {string} */
const selectionName = (sel, g, cls) => sel.length === 1 ? tokenName(sel[0], g, cls)
  : `mean of ${sel.length} ` + (cls !== null && sel.includes(cls) ? "tokens (the class token and " + (sel.length - 1) + " patches)" : "patches");
/** A block in words: "layers.5 (Vim layer, 14×14 patches + class token)" or "layers.0.blocks.0 (56×56)".
 * @param {App} app @param {string} name @returns {string} */
const blockName = (app, name) => {
  const g = blockOf(app, name).grid;
  return clsOf(app, name) === null ? `${name} (${g[0]}×${g[1]})` : `${name} (Vim layer, ${g[0]}×${g[1]} patches + class token)`;
};
/** @param {App} app @param {string} subj @returns {string} */
const subjectName = (app, subj) => subj === "mean" ? `mean of ${app.meta.count} images`
  : `image “${app.meta.single_images[+subj].name}”`;
/** The route whose scan order the scatterplot's colours and the path follow. @param {State} S */
const scanRoute = (S) => S.route === "sum" ? 0 : +S.route;
/** "(row, col)" of patch p. @param {number} p @param {number[]} g @returns {string} */
const rowCol = (p, g) => "(" + Math.floor(p / g[1]) + ", " + (p % g[1]) + ")";

/** @param {number[]} g @returns {number} the centre patch of grid g */
function centreOf(g) {
  return Math.floor(g[0] / 2) * g[1] + Math.floor(g[1] / 2);
}

/** The token a block opens with: its class token (what it reads from every patch, the map
 *  most wanted first), else the centre patch. @param {App} app @returns {number} */
function firstToken(app) {
  const c = clsOf(app, app.state.block);
  return c === null ? centreOf(grid(app)) : c;
}

/**
 * Map tokens of grid (h, w) to the tokens of grid (h2, w2) covering the same image area; a
 * class token (position fromCls) to the other's class token (toCls), or to nothing without one.
 * @param {number[]} ps
 * @param {number[]} from
 * @param {number[]} to
 * @param {number|null} [fromCls]
 * @param {number|null} [toCls]
 * @returns {number[]}
 */
function mapSelection(ps, from, to, fromCls = null, toCls = null) {
  if (from[0] === to[0] && from[1] === to[1] && fromCls === toCls) return ps.slice();
  return mapCells(ps, from, to, fromCls, toCls);
}

/** The selection on the right panel's grid (its image area). @param {App} app @returns {number[]} */
function selectionB(app) {
  const S = app.state, toCls = clsOf(viewB(app), S.B.block);
  return S.anchor ? mapSelection(S.anchor.sel, S.anchor.grid, gridB(app), S.anchor.cls, toCls)
    : mapSelection(S.selection, grid(app), gridB(app), clsOf(app, S.block), toCls);
}

/**
 * The selection kept on the image area after the block changed (from grid prevGrid and its
 * class token prevCls, or from the anchor), never empty (the first token: the class token of a
 * Vim layer, else the centre patch) but side by side, where the right panel's class token
 * selected has nothing on a grid without one.
 * @param {App} app
 * @param {number[]|null} prevGrid
 * @param {number|null} [prevCls]
 */
function keepSelection(app, prevGrid, prevCls = null) {
  const S = app.state, g = grid(app), cls = clsOf(app, S.block);
  if (S.anchor) S.selection = mapSelection(S.anchor.sel, S.anchor.grid, g, S.anchor.cls, cls);
  else if (!S.selection.length) S.selection = [firstToken(app)];
  else if (prevGrid) S.selection = mapSelection(S.selection, prevGrid, g, prevCls, cls);
  S.selection = S.selection.filter((p) => p < tokenCount(app));
  const fromB = S.mode === "compare" && S.anchor && S.anchor.sel.length && S.anchor.sel.every((p) => p === S.anchor.cls);
  if (!S.selection.length && !fromB) S.selection = [firstToken(app)];
  S.hover = -1;
}
