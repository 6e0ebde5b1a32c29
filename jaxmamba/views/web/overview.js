/* The overview: the selection mapped by image area to every block of the model. */

/** An overview panel's grid side in pixels (3 px a patch at 56x56); smaller when there are
 *  many panels (a Vim model's 24 layers). */
const PANEL_PX = 168, PANEL_PX_MANY = 120;

/** The overview: the selection mapped to every block, and its mean row there, one panel a block
 *  (a Vim layer's class token in its own cell beside the grid).
 * @param {App} app
 */
function drawOverview(app) {
  const S = app.state, ui = app.ui, data = app.data.overview;
  if (S.mode !== "overview" || !data) return;
  /** @type {{name: string, stage: number, grid: number[], cls: number|null, offset: number, length: number}[]} */
  const parts = data.content.blocks;
  const vals = data.values, g = grid(app), clsA = clsOf(app, S.block);
  const from = S.anchor ? S.anchor : { grid: g, sel: S.selection, cls: clsA };
  const side = parts.length > 12 ? PANEL_PX_MANY : PANEL_PX, anyCls = parts.some((b) => b.cls !== null && b.cls !== undefined);
  ui.overviewBox.innerHTML = "";
  for (const st of [...new Set(parts.map((b) => b.stage))]) {
    const inStage = parts.filter((x) => x.stage === st), vim = inStage.every((b) => b.cls !== null && b.cls !== undefined);
    const rowEl = el("div", { class: "jm-ov-row" }, el("div", { class: "jm-ov-stage", text: vim ? `${inStage.length} layers` : "stage " + st }));
    for (const b of inStage) {
      const cls = b.cls === undefined ? null : b.cls;
      const v = vals.subarray(b.offset, b.offset + b.length), sel = mapCells(from.sel, from.grid, b.grid, from.cls, cls);
      const sc = scaleFor(v, app.meta.signed, new Set(scaleSkip(sel, cls, S.noSelf)), S.scale);
      const G = geom(b.grid, cls, side);
      const cv = el("canvas", { class: "jm-ov-map", width: Math.round(G.W), height: Math.round(G.H),
        "data-block": b.name, "data-selected": sel.join(","), "data-cls": cls === null ? "" : String(cls),
        title: "open " + b.name + " in the patch view" });
      const ctx = cv.getContext("2d");
      for (let q = 0; q < b.grid[0] * b.grid[1]; q++) {
        const [x0, y0, x1, y1] = tokenRect(G, q);
        ctx.fillStyle = css(colourOf(sc, v[q]));
        ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
      }
      if (cls !== null) drawClsCell(ctx, G, colourOf(sc, v[cls]), null);
      outlineCells(ctx, sel, G);
      cv.addEventListener("click", () => openBlock(app, b.name));
      const here = b.name === S.block ? " (selected here)" : "";
      rowEl.appendChild(el("figure", { class: "jm-ov-panel" + (here ? " jm-ov-here" : "") },
        el("figcaption", { text: `${b.name} · ${b.grid[0]}×${b.grid[1]}` + (cls === null ? "" : " + CLS") }), cv,
        el("div", { class: "jm-ov-scale", text: `${sc.kind} scale, ${sc.signed ? "±" : "0 … "}${fmt(sc.hi)}` +
          (cls === null ? "" : ` · CLS ${fmt(v[cls])}`) })));
    }
    ui.overviewBox.appendChild(rowEl);
  }
  const n = S.selection.length;
  ui.overviewTitle.textContent = `The selection in every block: order ${S.order}, ` + routeText(app, S.order, S.route);
  ui.overviewCaption.textContent = `${n === 1 ? tokenName(S.selection[0], g, clsA).replace(/^./, (c) => c.toUpperCase()) : n + (clsA === null ? " patches" : " tokens")} ` +
    `of ${blockName(app, S.block)}, mapped ` + (clsA !== null && S.selection.includes(clsA) ? "(the class token to each layer's class token, patches by image area)"
      : "by image area") + " to each block (outlined): " +
    (S.direction === "query" ? "what it attends to (mean row)" : "what attends to it (mean column)") + `, ${subjectName(app, S.subject)}. ` +
    "Each panel on its own colour scale (its largest |value| under it: scales differ by orders of magnitude between blocks); " +
    (anyCls ? "CLS: the class token's cell beside each grid, coloured on that scale but not setting it (its value under the panel); " : "") +
    "green frame: the block the selection was made in; no image under the panels. " +
    "Click a panel to open that block in the patch view.";
}
/** The selected cells outlined, black under green so that it shows on any colour; cells of a
 *  few pixels (a 56x56 panel) get a frame around them, 3 px out.
 * @param {CanvasRenderingContext2D} ctx
 * @param {number[]} sel
 * @param {ReturnType<typeof geom>} G  the panel's geometry
 */
function outlineCells(ctx, sel, G) {
  for (const [colour, width] of /** @type {[string, number][]} */ ([["#000", 3], ["#00e060", 1.5]])) {
    ctx.strokeStyle = colour; ctx.lineWidth = width;
    for (const p of sel) {
      const [x0, y0, x1, y1] = tokenRect(G, p), pad = x1 - x0 < 8 ? 3 : 0;
      ctx.strokeRect(x0 + 0.5 - pad, y0 + 0.5 - pad, x1 - x0 - 1 + 2 * pad, y1 - y0 - 1 + 2 * pad);
    }
  }
}
