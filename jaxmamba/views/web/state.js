/* The app's state (one object, types.js State) and what it says read with the study's meta:
 * the block shown, its grid, the selection on another grid. */

/** @returns {State} the state before the meta is known (mount sets order, block, method) */
function initialState() {
  return { mode: "patches", order: "", block: "", subject: "mean", route: "sum", method: "", points: "interblock",
    colorBy: "row", direction: "query", image: -1, showPath: false, noSelf: true, selection: [], hover: -1,
    scale: "log", underlay: "grey", opacity: 0.75, compareScale: "auto",
    B: { order: "", block: "", subject: "mean" }, picked: null, anchor: null,
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
/** The grid of the right panel's block (side by side). @param {App} app @returns {number[]} */
const gridB = (app) => blockOf(app, app.state.B.block).grid;
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
  const S = app.state, toCls = clsOf(app, S.B.block);
  return S.anchor ? mapSelection(S.anchor.sel, S.anchor.grid, gridB(app), S.anchor.cls, toCls)
    : mapSelection(S.selection, grid(app), gridB(app), clsOf(app, S.block), toCls);
}

/**
 * The selection kept on the image area after the block changed (from grid prevGrid and its
 * class token prevCls, or from the anchor), never empty (the first token: the class token of a
 * Vim layer, else the centre patch).
 * @param {App} app
 * @param {number[]|null} prevGrid
 * @param {number|null} [prevCls]
 */
function keepSelection(app, prevGrid, prevCls = null) {
  const S = app.state, g = grid(app), cls = clsOf(app, S.block);
  if (!S.selection.length) S.selection = [firstToken(app)];
  else if (S.anchor) S.selection = mapSelection(S.anchor.sel, S.anchor.grid, g, S.anchor.cls, cls);
  else if (prevGrid) S.selection = mapSelection(S.selection, prevGrid, g, prevCls, cls);
  S.selection = S.selection.filter((p) => p < tokenCount(app));
  if (!S.selection.length) S.selection = [firstToken(app)];
  S.hover = -1;
}
