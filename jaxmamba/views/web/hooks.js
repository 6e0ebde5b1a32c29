/* The explorer's test hooks (`element.explorer`): its state, what it loaded and drew, and ways
 * to act on it as a person would (the browser tests use them). */

/** A scale without its functions (for the tests). @param {Scale} sc */
const publicScale = (sc) => ({ kind: sc.kind, signed: sc.signed, lo: sc.lo, hi: sc.hi, band: sc.band,
  dataLo: sc.dataLo, dataHi: sc.dataHi, ticks: sc.ticks.map((t) => ({ v: t.v, pos: t.pos, label: t.label })) });

/** @param {App} app */
function testHooks(app) {
  const S = app.state, D = app.data, ui = app.ui, root = app.root;
  return {
    ready: false, source: app.source.kind, state: S,
    get busy() { return app.run.busy; }, get error() { return app.run.lastError; },
    meta: () => app.meta,
    select: (/** @type {number[]} */ ps) => select(app, ps, false),
    pick: (/** @type {number} */ i) => pick(app, i),
    heatValues: () => D.heatA ? Array.from(D.heatA) : null,
    heatValuesB: () => D.heatB ? Array.from(D.heatB) : null,
    scale: () => D.scale && publicScale(D.scale),
    scaleB: () => D.scaleB && publicScale(D.scaleB),
    perPanel: () => perPanel(app),
    colourAt: (/** @type {number} */ v, /** @type {string} */ panel) => {
      const c = colourOf(panel === "B" ? D.scaleB : D.scale, v);
      return [c[0] | 0, c[1] | 0, c[2] | 0];
    },
    /** The drawn colour at the centre of patch p's cell on canvas `id` ("heat", "heatB"); in a
     *  class token's cell (p = cls), a fifth of its side in from its corner. */
    pixelAt: (/** @type {string} */ id, /** @type {number} */ p) => {
      const B = id === "heatB", cv = /** @type {HTMLCanvasElement} */ (root.querySelector("#" + id));
      const G = geom(B ? gridB(app) : grid(app), B ? clsOf(viewB(app), S.B.block) : clsOf(app, S.block)), [x0, y0, x1, y1] = tokenRect(G, p);
      const f = p === G.cls ? 0.2 : 0.5;  // the class token's cell: off its label
      const x = Math.floor(x0 + f * (x1 - x0)), y = Math.floor(y0 + f * (y1 - y0));
      const d = cv.getContext("2d").getImageData(x, y, 1, 1).data;
      return [d[0], d[1], d[2]];
    },
    get loading() { return !!app.run.loading; },
    /** Where token p's cell is on canvas `id` ("heat", "heatB"), in CSS pixels from its corner. */
    cellPosition: (/** @type {string} */ id, /** @type {number} */ p) => {
      const B = id === "heatB", cv = /** @type {HTMLCanvasElement} */ (root.querySelector("#" + id)), r = cv.getBoundingClientRect();
      const G = geom(B ? gridB(app) : grid(app), B ? clsOf(viewB(app), S.B.block) : clsOf(app, S.block)), [x0, y0, x1, y1] = tokenRect(G, p);
      return { x: (x0 + x1) / 2 * r.width / cv.width, y: (y0 + y1) / 2 * r.height / cv.height };
    },
    pointCount: () => (D.points ? D.points.length / 2 : 0),
    pointPosition: (/** @type {number} */ p) => ({ x: D.screen[2 * p] * ui.scatterCv.getBoundingClientRect().width / ui.scatterCv.width,
      y: D.screen[2 * p + 1] * ui.scatterCv.getBoundingClientRect().height / ui.scatterCv.height }),
    matrix: () => D.matrix && { ...D.matrix.content, values: Array.from(D.matrix.values) },
    overview: () => D.overview && { ...D.overview.content, values: Array.from(D.overview.values) },
    openBlock: (/** @type {string} */ name) => openBlock(app, name),
    setControl: (/** @type {string} */ id, /** @type {unknown} */ value) => {
      const e = /** @type {HTMLInputElement} */ (root.querySelector("#" + id));
      if (e.type === "checkbox") e.checked = !!value; else e.value = String(value);
      e.dispatchEvent(new Event("change"));
    },
    row: app.source.rowSync ? (/** @type {number} */ p) => Array.from(app.source.rowSync(S.order, S.block, S.route, p)) : null,
  };
}
