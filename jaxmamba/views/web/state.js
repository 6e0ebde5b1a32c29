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

/**
 * Map patches of grid (h, w) to the patches of grid (h2, w2) covering the same image area.
 * @param {number[]} ps
 * @param {number[]} from
 * @param {number[]} to
 * @returns {number[]}
 */
function mapSelection(ps, from, to) {
  if (from[0] === to[0] && from[1] === to[1]) return ps.slice();
  return mapCells(ps, from, to);
}

/** The selection on the right panel's grid (its image area). @param {App} app @returns {number[]} */
function selectionB(app) {
  const S = app.state;
  return S.anchor ? mapSelection(S.anchor.sel, S.anchor.grid, gridB(app)) : mapSelection(S.selection, grid(app), gridB(app));
}

/**
 * The selection kept on the image area after the block changed (from grid prevGrid, or from the
 * anchor), never empty (the centre patch).
 * @param {App} app
 * @param {number[]|null} prevGrid
 */
function keepSelection(app, prevGrid) {
  const S = app.state, g = grid(app);
  if (!S.selection.length) S.selection = [centreOf(g)];
  else if (S.anchor) S.selection = mapSelection(S.anchor.sel, S.anchor.grid, g);
  else if (prevGrid) S.selection = mapSelection(S.selection, prevGrid, g);
  S.selection = S.selection.filter((p) => p < patchCount(app));
  if (!S.selection.length) S.selection = [centreOf(g)];
  S.hover = -1;
}
