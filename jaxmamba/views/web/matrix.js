/* The matrix view: a block's mean attention matrix in scan order, pooled to screen size. */

/** The matrix plot's side in pixels (asked of the source), its margins for the axes. */
const MATRIX_PX = 448, MARGIN = { l: 58, t: 6, r: 14, b: 38 };

/** @typedef {Described & {routes: Int32Array, cls: number|null}} MatrixData  the pooled matrix,
 *  the routes and the block's class token (null: none) */

/** The matrix's geometry on its canvas: n pooled cells of pix pixels, the plot at (x0, y0).
 * @param {MatrixData} data
 * @returns {{n: number, f: number, L: number, pix: number, P: number, x0: number, y0: number}}
 */
function matrixGeom(data) {
  const c = data.content, pix = Math.max(1, Math.floor(MATRIX_PX / c.n));
  return { n: c.n, f: c.f, L: c.L, pix, P: pix * c.n, x0: MARGIN.l, y0: MARGIN.t };
}

/** Scan position of each patch on the matrix's axes route (its inverse permutation).
 * @param {MatrixData} data
 * @returns {Int32Array}
 */
function matrixPositions(data) {
  const c = data.content, L = c.L, pos = new Int32Array(L);
  for (let t = 0; t < L; t++) pos[data.routes[c.coords * L + t]] = t;
  return pos;
}

/** The matrix view: the block's pooled matrix in scan order, the selection's rows marked.
 * @param {App} app
 */
function drawMatrix(app) {
  const S = app.state, ui = app.ui, data = app.data.matrix, matrixCv = ui.matrixCv;
  if (S.mode !== "matrix" || !data || data.content.L !== tokenCount(app)) return;
  const c = data.content, vals = data.values, G = matrixGeom(data), ctx = matrixCv.getContext("2d");
  matrixCv.width = G.x0 + G.P + MARGIN.r; matrixCv.height = G.y0 + G.P + MARGIN.b;
  ctx.clearRect(0, 0, matrixCv.width, matrixCv.height);
  const sc = scaleFor(vals, app.meta.signed, null, S.scale);
  const img = ctx.createImageData(G.P, G.P), px = img.data;
  for (let i = 0; i < G.n; i++) for (let j = 0; j < G.n; j++) {
    const col = colourOf(sc, vals[i * G.n + j]);
    for (let y = i * G.pix; y < (i + 1) * G.pix; y++) for (let x = j * G.pix; x < (j + 1) * G.pix; x++) {
      const o = 4 * (y * G.P + x);
      px[o] = col[0]; px[o + 1] = col[1]; px[o + 2] = col[2]; px[o + 3] = 255;
    }
  }
  ctx.putImageData(img, G.x0, G.y0);
  ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.strokeRect(G.x0 - 0.5, G.y0 - 0.5, G.P + 1, G.P + 1);
  // the selection's rows: a mark in the right margin per pooled row holding a selected patch
  const pos = matrixPositions(data), rows = [...new Set(S.selection.map((p) => Math.floor(pos[p] / G.f)))];
  ctx.fillStyle = "#00a03c";
  for (const i of rows) ctx.fillRect(G.x0 + G.P + 2, G.y0 + i * G.pix + G.pix / 2 - 1.5, 10, Math.max(3, G.pix - 2));
  if (rows.length <= 8) {  // a few rows: a faint line across them too
    ctx.strokeStyle = "rgba(0,160,60,0.55)";
    for (const i of rows) { ctx.beginPath(); ctx.moveTo(G.x0, G.y0 + (i + 0.5) * G.pix); ctx.lineTo(G.x0 + G.P, G.y0 + (i + 0.5) * G.pix); ctx.stroke(); }
  }
  // a class token (a Vim layer's, not on the grid): its row and column dashed, "CLS" at their ends
  const tc = data.cls === null ? -1 : pos[data.cls];
  if (tc >= 0) {
    const at = G.pix * (tc + 0.5) / G.f;
    ctx.save(); ctx.strokeStyle = "rgba(0,200,255,0.9)"; ctx.setLineDash([3, 3]); ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(G.x0, G.y0 + at); ctx.lineTo(G.x0 + G.P, G.y0 + at); ctx.moveTo(G.x0 + at, G.y0); ctx.lineTo(G.x0 + at, G.y0 + G.P); ctx.stroke();
    ctx.restore();
  }
  if (S.matrixHover >= 0) { ctx.strokeStyle = "#000"; ctx.strokeRect(G.x0 - 0.5, G.y0 + S.matrixHover * G.pix - 0.5, G.P + 1, G.pix + 1); }
  // axes: scan positions 0 .. L - 1
  ctx.fillStyle = "#333"; ctx.font = "11px system-ui, sans-serif";
  const step = niceStep(c.L);
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (let t = 0; t < c.L; t += step) {
    const x = G.x0 + (t / G.f) * G.pix;
    ctx.fillRect(x, G.y0 + G.P, 1, 4); ctx.fillText(String(t), x, G.y0 + G.P + 5);
  }
  ctx.fillText("source scan position s" + (tc >= 0 ? ` (class token at ${tc}: dashed)` : ""), G.x0 + G.P / 2, G.y0 + G.P + 20);
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let t = 0; t < c.L; t += step) {
    const y = G.y0 + (t / G.f) * G.pix;
    ctx.fillRect(G.x0 - 4, y, 4, 1); ctx.fillText(String(t), G.x0 - 6, y);
  }
  ctx.save(); ctx.translate(11, G.y0 + G.P / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
  ctx.fillText("query scan position t", 0, 0); ctx.restore();
  drawColorbar(ui.matrixBar, sc, null);
  const shown = routeText(app, S.order, S.route), axes = routeName(app, S.order, c.coords), vim = isVimOrder(app, S.order);
  const axesText = vim ? "the " + axes + " scan" : "route " + c.coords;
  ui.matrixTitle.textContent = `Attention matrix of ${blockName(app, S.block)}, L = ${c.L}, order ${S.order}, ${shown}`;
  ui.matrixCaption.textContent = `Mean over ${app.meta.count} images. Rows and columns in the scan order of ${axesText} of ` +
    `${S.order}: M[t, s] = A[route${c.coords}[t], route${c.coords}[s]], row t = what the patch at scan position t attends to` +
    (S.route === "sum" ? ` (${shown}: only ${axesText}'s part is lower-triangular in these axes)`
      : +S.route === c.coords ? " (lower-triangular: a causal scan)" : ` (${routeName(app, S.order, S.route)} in the order of ${axesText}: not triangular)`) +
    ". " + (c.f > 1 ? `Pooled ${c.f}×${c.f}: each pixel is the mean of ${c.f * c.f} entries (${c.n}×${c.n} pixels).`
      : `Not pooled: each pixel is one entry.`) +
    ` Green marks (right margin): the rows of the ${S.selection.length} selected patch${S.selection.length > 1 ? "es" : ""}.` +
    (sc.signed ? " Signed values: blue < 0 < red." : "") +
    (tc >= 0 ? ` The class token (not on the grid) is at scan position ${tc} of ${axesText} (the middle of the sequence): ` +
      "the dashed cyan lines are its row (what it reads) and its column (what reads from it)." : "");
  matrixCv.setAttribute("data-rows", rows.sort((a, b) => a - b).join(","));
  ui.matrixInfo.textContent = S.matrixHover >= 0 ? matrixRowText(app, S.matrixHover) : "Click a row to select its patches (shift-click adds).";
}

/** A tick step for 0..L: 1, 2 or 5 times a power of ten, about L / 5.
 * @param {number} L
 * @returns {number}
 */
function niceStep(L) {
  const raw = L / 5, p = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map((k) => k * p).find((v) => v >= raw) || raw;
}

/** The patches of pooled row i of the matrix (scan positions i·f .. i·f + f - 1).
 * @param {MatrixData} data
 * @param {number} i
 * @returns {number[]}
 */
function matrixRowPatches(data, i) {
  const c = data.content, out = [];
  for (let t = i * c.f; t < Math.min(c.L, (i + 1) * c.f); t++) out.push(data.routes[c.coords * c.L + t]);
  return out;
}

/** Pooled row i in words. @param {App} app @param {number} i @returns {string} */
function matrixRowText(app, i) {
  const data = app.data.matrix, c = data.content, g = grid(app), ps = matrixRowPatches(data, i);
  return `row ${i}: scan positions ${i * c.f}–${Math.min(c.L, (i + 1) * c.f) - 1}, ${data.cls === null ? "patches" : "tokens"} ` +
    ps.slice(0, 8).map((p) => p === data.cls ? "CLS" : rowCol(p, g)).join(" ") +
    (ps.length > 8 ? " …" : "");
}

/** The pooled row at canvas height y, -1 outside the plot or without a matrix.
 * @param {App} app
 * @param {number} y
 * @returns {number}
 */
function matrixRowAt(app, y) {
  if (!app.data.matrix) return -1;
  const G = matrixGeom(app.data.matrix), i = Math.floor((y - G.y0) / G.pix);
  return i >= 0 && i < G.n ? i : -1;
}
