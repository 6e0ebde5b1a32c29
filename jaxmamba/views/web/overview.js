/* The overview: the selection mapped by image area to every block of the model. */

/** An overview panel's side in pixels (3 px a patch at 56x56). */
const PANEL_PX = 168;

/** The overview: the selection mapped to every block, and its mean row there, one panel a block.
 * @param {App} app
 */
function drawOverview(app) {
  const S = app.state, ui = app.ui, data = app.data.overview;
  if (S.mode !== "overview" || !data) return;
  /** @type {{name: string, stage: number, grid: number[], cls: number|null, offset: number, length: number}[]} */
  const parts = data.content.blocks;
  const vals = data.values, g = grid(app);
  const from = S.anchor ? S.anchor : { grid: g, sel: S.selection };
  ui.overviewBox.innerHTML = "";
  for (const st of [...new Set(parts.map((b) => b.stage))]) {
    const rowEl = el("div", { class: "jm-ov-row" }, el("div", { class: "jm-ov-stage", text: "stage " + st }));
    for (const b of parts.filter((x) => x.stage === st)) {
      const v = vals.subarray(b.offset, b.offset + b.length), sel = mapCells(from.sel, from.grid, b.grid);
      const sc = scaleFor(v, app.meta.signed, S.noSelf ? new Set(sel) : null, S.scale);
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
      cv.addEventListener("click", () => openBlock(app, b.name));
      const here = b.name === S.block ? " (selected here)" : "";
      rowEl.appendChild(el("figure", { class: "jm-ov-panel" + (here ? " jm-ov-here" : "") },
        el("figcaption", { text: `${b.name} · ${b.grid[0]}×${b.grid[1]}` }), cv,
        el("div", { class: "jm-ov-scale", text: `${sc.kind} scale, ${sc.signed ? "±" : "0 … "}${fmt(sc.hi)}` })));
    }
    ui.overviewBox.appendChild(rowEl);
  }
  const n = S.selection.length;
  ui.overviewTitle.textContent = `The selection in every block: order ${S.order}, ` + (S.route === "sum" ? "routes summed" : "route " + S.route);
  ui.overviewCaption.textContent = `${n === 1 ? "Patch " + rowCol(S.selection[0], g) : n + " patches"} ` +
    `of ${S.block} (${g[0]}×${g[1]}), mapped by image area to each block (outlined): ` +
    (S.direction === "query" ? "what it attends to (mean row)" : "what attends to it (mean column)") + `, ${subjectName(app, S.subject)}. ` +
    "Each panel on its own colour scale (its largest |value| under it: scales differ by orders of magnitude between blocks); " +
    "green frame: the block the selection was made in; no image under the panels. " +
    "Click a panel to open that block in the patch view.";
}
/** The selected cells outlined, black under green so that it shows on any colour; cells of a
 *  few pixels (a 56x56 panel) get a frame around them, 3 px out.
 * @param {CanvasRenderingContext2D} ctx
 * @param {number[]} sel
 * @param {number[]} g
 * @param {number} cell  a cell's side in pixels
 */
function outlineCells(ctx, sel, g, cell) {
  const pad = cell < 8 ? 3 : 0;
  for (const [colour, width] of /** @type {[string, number][]} */ ([["#000", 3], ["#00e060", 1.5]])) {
    ctx.strokeStyle = colour; ctx.lineWidth = width;
    for (const p of sel) ctx.strokeRect((p % g[1]) * cell + 0.5 - pad, Math.floor(p / g[1]) * cell + 0.5 - pad, cell - 1 + 2 * pad, cell - 1 + 2 * pad);
  }
}
