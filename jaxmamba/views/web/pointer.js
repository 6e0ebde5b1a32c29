/* The page's events: a control's change, and the pointer on the scatterplot (hover, click, lasso),
 * the heat maps (hover, click, rectangle) and the matrix (hover, click on a row). Each ends in
 * update() (state) or render() (a drag's outline). */

/**
 * The canvas pixel under the pointer.
 * @param {MouseEvent} ev
 * @param {HTMLCanvasElement} cv
 * @returns {number[]}  [x, y]
 */
function pos(ev, cv) {
  const r = cv.getBoundingClientRect();
  return [(ev.clientX - r.left) * (cv.width / r.width), (ev.clientY - r.top) * (cv.height / r.height)];
}

/** Listen to the controls and the pointer. @param {App} app */
function listen(app) {
  const ui = app.ui, S = app.state, P = app.pointer;
  for (const [id, input] of Object.entries(ui.ctl))
    input.addEventListener("change", () => update(app, changeOf(app, id, input)));
  ui.reset.addEventListener("click", () => select(app, [centreOf(grid(app))], false));

  const scatterCv = ui.scatterCv;
  scatterCv.addEventListener("mousedown", (ev) => { P.down = pos(ev, scatterCv); P.lasso = S.mode === "patches" ? [P.down] : null; ev.preventDefault(); });
  scatterCv.addEventListener("mousemove", (ev) => {
    const screen = app.data.screen;
    if (!screen || S.mode !== "patches") return;
    const [x, y] = pos(ev, scatterCv);
    if (P.down && P.lasso) { P.lasso.push([x, y]); render(app); return; }
    const p = nearest(screen, x, y, 8);
    if (p !== S.hover) update(app, { hover: p });
  });
  scatterCv.addEventListener("mouseleave", () => { if (!P.down && S.hover >= 0) update(app, { hover: -1 }); });
  scatterCv.addEventListener("mouseup", (ev) => {
    const screen = app.data.screen;
    if (!P.down || !screen) return;
    const [x, y] = pos(ev, scatterCv), poly = P.lasso, start = P.down;
    P.down = null; P.lasso = null;
    if (S.mode === "blocks") { const p = nearest(screen, x, y, 10); if (p >= 0) pick(app, p); return; }
    const moved = poly && poly.some(([px, py]) => Math.hypot(px - start[0], py - start[1]) > 4);
    if (moved && poly.length > 2) {
      const ps = [];
      for (let p = 0; p < tokenCount(app); p++) if (inside(poly, screen[2 * p], screen[2 * p + 1])) ps.push(p);
      select(app, ps, ev.shiftKey);
    } else {
      const p = nearest(screen, x, y, 10);
      if (p >= 0) select(app, [p], ev.shiftKey); else render(app);
    }
  });

  for (const [cv, g, cl] of /** @type {[HTMLCanvasElement, () => number[], () => number|null][]} */ ([
    [ui.heatCv, () => grid(app), () => clsOf(app, S.block)], [ui.heatCvB, () => gridB(app), () => clsOf(viewB(app), S.B.block)]])) {
    cv.addEventListener("mousedown", (ev) => { const [x, y] = pos(ev, cv); P.rect = { cv, x0: x, y0: y, x1: x, y1: y }; ev.preventDefault(); });
    cv.addEventListener("mousemove", (ev) => {
      const [x, y] = pos(ev, cv), rect = P.rect;
      if (rect && rect.cv === cv) { rect.x1 = x; rect.y1 = y; }
      if (cv !== ui.heatCv) { if (rect) render(app); return; }
      const p = cellAt(g(), x, y, cl());
      if (p !== S.hover || rect) update(app, { hover: p });
    });
    cv.addEventListener("mouseleave", () => { if (!P.rect && S.hover >= 0) update(app, { hover: -1 }); });
    cv.addEventListener("mouseup", (ev) => {
      if (!P.rect || P.rect.cv !== cv) return;
      const r = P.rect;
      P.rect = null;
      const G = g(), w = G[1], c = cl(), n = G[0] * G[1];
      const a = cellAt(G, Math.min(r.x0, r.x1), Math.min(r.y0, r.y1));
      const z = cellAt(G, Math.max(r.x0, r.x1) - 1e-3, Math.max(r.y0, r.y1) - 1e-3);
      let ps = [];
      if (a >= 0 && z >= 0 && a !== z && a < n && z < n) {  // a rectangle of patches (the class token is no grid cell)
        for (let rr = Math.floor(a / w); rr <= Math.floor(z / w); rr++) for (let cc = a % w; cc <= z % w; cc++) ps.push(rr * w + cc);
      } else {
        const p = cellAt(G, r.x1, r.y1, c);
        if (p >= 0) ps = [p];
      }
      if (!ps.length) { render(app); return; }
      if (cv !== ui.heatCv) {  // the right panel's cells: its image area on the left grid
        select(app, mapSelection(ps, G, grid(app), c, clsOf(app, S.block)), false, { grid: G, sel: ps, cls: c });
        return;
      }
      select(app, ps, ev.shiftKey);
    });
  }
  window.addEventListener("mouseup", () => { if (P.down || P.rect) { P.down = null; P.lasso = null; P.rect = null; render(app); } });

  const matrixCv = ui.matrixCv;
  const rowAt = (/** @type {MouseEvent} */ ev) => matrixRowAt(app, pos(ev, matrixCv)[1]);
  matrixCv.addEventListener("mousemove", (ev) => { const i = rowAt(ev); if (i !== S.matrixHover) update(app, { matrixHover: i }); });
  matrixCv.addEventListener("mouseleave", () => { if (S.matrixHover >= 0) update(app, { matrixHover: -1 }); });
  matrixCv.addEventListener("click", (ev) => { const i = rowAt(ev); if (i >= 0) select(app, matrixRowPatches(app.data.matrix, i), ev.shiftKey); });
}
