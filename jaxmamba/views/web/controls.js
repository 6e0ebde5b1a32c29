/* The controls: their fixed items, their items and visibility from the meta and the state
 * (syncControls), and what a change of one asks of the state (changeOf). */

/** Opacities of a map over an image (the colour bar is drawn the same way): 0.75 by default; 0.5
 *  lets a faint image (a small digit) show through, 0.9 keeps the colours nearly exact. */
const OPACITIES = [0.5, 0.75, 0.9];
/** @type {Object<string, string>} */
const METHOD_NAMES = { pca: "PCA", tsne: "t-SNE", umap: "UMAP" };
const MODES = [["patches", "Patches of a block"], ["blocks", "Blocks of a stage"], ["compare", "Side by side"],
  ["matrix", "Attention matrix"], ["overview", "Selection in every block"]];
const POINTS = [["interblock", "one point per (image, block) map"], ["joint", "one point per (patch, block), mean maps"]];
/** @type {Object<string, string>} */
const VIEW_HELP = {
  matrix: "The block's mean attention matrix, rows and columns in scan order (row t: what the patch at scan position t " +
    "attends to). Per route it is lower-triangular: a patch attends only to patches scanned before it. Pooled on the server " +
    "to screen size. The selection's rows are marked in the margin; click a row to select its patches.",
  overview: "The selection (outlined) mapped by image area to every block of the model, and its mean attention there, each " +
    "panel on its own colour scale. Click a panel to open that block in the patch view.",
};

/** The controls' fixed items and first values. @param {Ui} ui */
function initControls(ui) {
  const ctl = ui.ctl;
  fill(ctl.mode, MODES, "patches");
  fill(ctl.direction, [["query", "what the selection attends to (rows)"], ["source", "what attends to the selection (columns)"]], "query");
  fill(ctl.scale, [["log", "log (symlog)"], ["linear", "linear"], ["rank", "rank (quantiles)"]], "log");
  fill(ctl.underlay, [["grey", "grey (dimmed)"], ["colour", "in colour"], ["none", "none"]], "grey");
  fill(ctl.opacity, OPACITIES.map((a) => [String(a), String(a)]), "0.75");
  ctl.noself.checked = true;
  fill(ctl.points, POINTS, "interblock");
}

/**
 * What a change of control `id` asks of the state (its new value read from the control).
 * @param {App} app
 * @param {string} id
 * @param {HTMLInputElement|HTMLSelectElement} input
 * @returns {Partial<State>}
 */
function changeOf(app, id, input) {
  const S = app.state, v = input.value;
  const checked = input instanceof HTMLInputElement && input.checked;
  switch (id) {
    case "mode": return { mode: v, picked: null };
    case "stage": return { block: orderOf(app, S.order).blocks.find((n) => String(blockOf(app, n).stage) === v), picked: null };
    case "points": return { points: v, picked: null };
    case "colorby": return { colorBy: v };
    case "image": return { image: +v };
    case "opacity": return { opacity: +v };
    case "showpath": return { showPath: checked };
    case "noself": return { noSelf: checked };
    case "comparescale": return { compareScale: v };
    case "studyB": return { B: { ...S.B, study: +v }, anchor: null };  // the selection of the left panel kept
    case "orderB": return { B: { ...S.B, order: v } };
    case "blockB": return { B: { ...S.B, block: v } };
    case "subjectB": return { B: { ...S.B, subject: v } };
    case "matrix-coords": return { matrixCoords: v };
    default: return { [id]: v };  // order, block, subject, route, method, direction, scale, underlay
  }
}

/** @param {App} app @returns {string[][]} the subjects' items: the mean, then each single image */
function subjects(app) {
  return [["mean", `mean of ${app.meta.count} images`]].concat(app.meta.single_images.map((s) => [String(s.subject), "image: " + s.name]));
}

/**
 * The controls' items and values from the meta and the state, the state made consistent with
 * them (a block of the order, a route the study has, ...), the panels of the mode shown.
 * @param {App} app
 */
function syncControls(app) {
  const M = app.meta, S = app.state, ui = app.ui, ctl = ui.ctl;
  const modelOf = (/** @type {OrderMeta} */ o) => o.model_digest || o.model;
  const many = M.orders.some((o) => modelOf(o) !== modelOf(M.orders[0]));
  const orderItems = M.orders.map((o) => [o.name, o.name + (!modelOf(o) ? ""
    : ` · ${many ? "its own model" : "model"} ${o.model_digest ? o.model_digest.slice(0, 8) : o.model}`)]);
  S.mode = fill(ctl.mode, MODES.filter(([m]) => m !== "blocks" || M.stages.some((s) => s.blocks.length > 1)), S.mode);
  S.order = fill(ctl.order, orderItems, S.order);
  const names = orderOf(app, S.order).blocks;
  if (!names.includes(S.block)) S.block = names[0];
  const stage = fill(ctl.stage, M.stages.filter((s) => S.mode !== "blocks" || s.blocks.length > 1)
    .map((s) => [s.stage, clsOf(app, s.blocks[0]) !== null
      ? `the ${s.blocks.length} Vim layer${s.blocks.length > 1 ? "s" : ""} (${s.grid[0]}×${s.grid[1]} patches + class token)`
      : `stage ${s.stage} (${s.grid[0]}×${s.grid[1]}, ${s.blocks.length} block${s.blocks.length > 1 ? "s" : ""})`]),
  blockOf(app, S.block).stage);
  const inStage = names.filter((n) => String(blockOf(app, n).stage) === String(stage));
  if (!inStage.includes(S.block)) S.block = inStage[0];
  S.block = fill(ctl.block, inStage.map((n) => [n, n]), S.block);
  S.subject = fill(ctl.subject, subjects(app), S.subject);
  const routeItems = [["sum", isVimOrder(app, S.order) ? "directions averaged (the layer's merge)" : "sum of routes"]];
  const k = orderOf(app, S.order).routes || 4;
  if (M.route_maps || S.subject !== "mean") for (let r = 0; r < k; r++) routeItems.push([String(r), routeName(app, S.order, r)]);
  S.route = fill(ctl.route, routeItems, S.route);
  const methodItems = S.mode === "patches" && S.subject !== "mean" ? [["pca", "PCA of this image's rows"]]
    : M.methods.map((m) => [m, METHOD_NAMES[m] || m]);
  S.method = fill(ctl.method, methodItems, S.method);
  S.points = fill(ctl.points, POINTS.filter(([p]) => p !== "interblock" || M.single_images.length > 1), S.points);
  S.colorBy = fill(ctl.colorby, [["row", "grid row"], ["col", "grid column"], ["scan", "scan position"]], S.colorBy);
  S.image = M.images.length ? +fill(ctl.image, M.images.map((im, i) => [String(i), im.name]), String(S.image)) : -1;
  const companions = M.companions || [];
  S.B.study = +fill(ctl.studyB, [[0, studyLabel(app, 0)], ...companions.map((c) => [c.index, studyLabel(app, c.index)])], S.B.study);
  const vB = viewB(app), MB = vB.meta, own = S.B.study === 0;
  const orderItemsB = own ? orderItems : MB.orders.map((o) => [o.name, o.name + " · " + modelShort(vB, o.name)]);
  S.B.order = fill(ctl.orderB, orderItemsB, S.B.order || (own ? (M.orders[1] || M.orders[0]) : MB.orders[0]).name);
  const namesB = orderOf(vB, S.B.order).blocks;
  S.B.block = fill(ctl.blockB, namesB.map((n) => [n, n]), namesB.includes(S.B.block) ? S.B.block : S.block);
  S.B.subject = fill(ctl.subjectB, subjects(vB), S.B.subject);
  const show = (/** @type {string} */ id, /** @type {boolean} */ on) => app.root.querySelector(id).classList.toggle("hidden", !on);
  const withImages = M.images.length > 0 || M.single_images.length > 0;
  const matrix = S.mode === "matrix", overview = S.mode === "overview";
  show("#order-ctl", M.orders.length > 1 || S.mode !== "patches");
  show("#block-ctl", S.mode !== "blocks");
  show("#subject-ctl", M.single_images.length > 0 && S.mode !== "blocks" && !matrix);
  show("#route-ctl", routeItems.length > 1 && S.mode !== "blocks");
  show("#points-ctl", S.mode === "blocks");
  show("#colorby-ctl", S.mode === "patches");
  show("#method-ctl", S.mode !== "compare" && !matrix && !overview);
  show("#image-ctl", M.images.length > 0 && S.underlay !== "none" && !overview && !(S.mode !== "compare" && S.subject !== "mean"));
  show("#underlay-ctl", withImages && !overview);  // no image under the panels
  show("#opacity-ctl", withImages && !overview && S.underlay !== "none");
  const r = compareRule(app);
  S.compareScale = fill(ctl.comparescale, [["auto", `automatic: ${r.panel ? "one per panel" : "shared"} (${r.why})`],
    ["shared", "one scale for both panels"], ["panel", "one scale per panel"]], S.compareScale);
  show("#path-ctl", S.mode === "patches");
  show("#compare-ctl", S.mode === "compare");
  show("#studyB-ctl", companions.length > 0);
  ui.scatterPanel.classList.toggle("hidden", S.mode === "compare" || matrix || overview);
  ui.heatPanelB.classList.toggle("hidden", S.mode !== "compare");
  ui.matrixPanel.classList.toggle("hidden", !matrix);
  ui.overviewPanel.classList.toggle("hidden", !overview);
  ui.heatPanel.classList.toggle("hidden", overview);
  if (matrix) {  // the matrix is of the mean map (per route only where the study kept route maps)
    if (S.subject !== "mean") S.subject = ctl.subject.value = "mean";
    if (!M.route_maps && S.route !== "sum") S.route = ctl.route.value = "sum";
    const shown = S.route === "sum" ? "0" : S.route;
    S.matrixCoords = fill(ctl["matrix-coords"], [["auto", `the route shown (${routeName(app, S.order, shown)})`]].concat(
      Array.from({ length: k }, (_, r) => [String(r), routeName(app, S.order, r)])), S.matrixCoords);
  }
  ui.help.textContent = VIEW_HELP[S.mode] || {
    patches: (clsOf(app, S.block) !== null ? "A Vim layer: the class token's cell (CLS, right of the grid) and its point (the diamond) select it " +
      "like a patch; it opens selected (its row: what it reads from every patch). " : "") +
      "Click a point or a grid cell to select that patch (shift-click adds or removes it). Drag in the scatterplot to " +
      "lasso patches, or drag across the grid for a rectangle: the heat map shows their mean attention. Switching stage keeps " +
      "the selection on the same image area.",
    blocks: "Each point is one block's (a Vim model: one layer's) attention: of one image ((image, block) points: the maps pooled to at most " +
      `${M.pool_grid || 14}×${M.pool_grid || 14} groups of patches on both axes, then embedded) or of one patch of the mean ` +
      "map ((patch, block) points). Click a point to open that map in the patch view.",
    compare: "Two maps side by side, on one colour scale or one each (\u201ccolour scales\u201d). Click either grid: the selection is linked by image area (a patch of " +
      "a coarser stage covers the patches of a finer one)." + (companions.length ? " The right panel may show a companion study (\u201cstudy\u201d): " +
      "another model over the same images; a class token maps to the other panel's class token, or to nothing in a VMamba block." : ""),
  }[S.mode];
}
