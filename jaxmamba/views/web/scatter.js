/* The scatterplot: the patches of a block by their attention rows (patches mode), or one point
 * per (image, block) map or (patch, block) of a stage (blocks mode). */

/**
 * The points on the canvas (the embedding fitted into it, y up), or null without points.
 * @param {Float32Array|null} points  (n, 2) flat
 * @returns {Float32Array|null}
 */
function layoutPoints(points) {
  if (!points) return null;
  const n = points.length / 2;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) { const x = points[2 * i], y = points[2 * i + 1];
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const span = Math.max(x1 - x0, y1 - y0) || 1, k = (SIZE - 2 * PAD) / span;
  const ox = (SIZE - (x1 - x0) * k) / 2, oy = (SIZE - (y1 - y0) * k) / 2;
  const screen = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    screen[2 * i] = ox + (points[2 * i] - x0) * k;
    screen[2 * i + 1] = SIZE - (oy + (points[2 * i + 1] - y0) * k);
  }
  return screen;
}

/**
 * What point i of the blocks mode's scatterplot is: a (block, image|patch) pair.
 * @param {App} app
 * @returns {{blocks: string[], per: number, of: (i: number) => {block: string, item: number}}}
 */
function describePoints(app) {
  const st = stageOf(app, blockOf(app, app.state.block).stage), nb = st.blocks.length, n = app.data.points.length / 2, per = n / nb;
  return { blocks: st.blocks, per, of: (i) => ({ block: st.blocks[Math.floor(i / per)], item: i % per }) };
}

/**
 * The points' colours: by block (blocks mode), or by grid row, column or scan position.
 * @param {App} app
 * @returns {{cols: string[], legend?: string[], top?: number, what?: string}}
 */
function pointColours(app) {
  const S = app.state, points = app.data.points, routes = app.data.routes, n = points.length / 2;
  if (S.mode === "blocks") {
    const d = describePoints(app);
    return { cols: Array.from({ length: n }, (_, i) => css(blockColour(d.blocks.length, Math.floor(i / d.per)))), legend: d.blocks };
  }
  const [h, w] = grid(app), vals = new Float32Array(n), cls = clsOf(app, S.block);
  let top = 1, what;
  if (S.colorBy === "scan" && routes) {
    const k = scanRoute(S);
    for (let t = 0; t < n; t++) vals[routes[k * n + t]] = t;
    top = n - 1; what = "scan position on route " + k;
  } else {
    for (let p = 0; p < n; p++) vals[p] = p === cls ? NaN : S.colorBy === "col" ? p % w : Math.floor(p / w);  // the class token: no row
    top = (S.colorBy === "col" ? w : h) - 1; what = "grid " + (S.colorBy === "col" ? "column" : "row");
  }
  return { cols: Array.from(vals, (v) => isNaN(v) ? "#fff" : css(lerp(VIRIDIS, top > 0 ? v / top : 0))), top, what };
}

/** Block j's colour among nb: tab10 for up to 10 blocks, else viridis by depth (24 Vim layers).
 * @param {number} nb @param {number} j @returns {RGB} */
function blockColour(nb, j) {
  return nb <= 10 ? TAB10[j % 10] : lerp(VIRIDIS, nb > 1 ? j / (nb - 1) : 0);
}

/**
 * Draw a class token's point: a diamond, outlined, larger than a patch's, labelled "CLS".
 * @param {CanvasRenderingContext2D} ctx
 * @param {number} x
 * @param {number} y
 * @param {number} r  its half-diagonal in pixels
 * @param {string} fill
 * @param {boolean} label
 */
function drawClsPoint(ctx, x, y, r, fill, label) {
  ctx.beginPath(); ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); ctx.closePath();
  ctx.fillStyle = fill; ctx.fill();
  ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5; ctx.stroke();
  if (!label) return;
  ctx.font = "bold 11px system-ui, sans-serif"; ctx.textAlign = x > SIZE - 40 ? "right" : "left"; ctx.textBaseline = "middle";
  ctx.lineWidth = 3; ctx.strokeStyle = "rgba(255,255,255,0.85)";
  const tx = x > SIZE - 40 ? x - r - 3 : x + r + 3;
  ctx.strokeText("CLS", tx, y); ctx.fillStyle = "#000"; ctx.fillText("CLS", tx, y);
}

/** @param {App} app */
function drawScatter(app) {
  const S = app.state, ui = app.ui, screen = app.data.screen, lasso = app.pointer.lasso;
  if (!screen || S.mode === "compare") return;
  const sctx = ui.scatterCv.getContext("2d");
  const n = app.data.points.length / 2, rad = n > 1500 ? 2 : n > 400 ? 3 : 4.5;
  const pc = pointColours(app);
  sctx.clearRect(0, 0, SIZE, SIZE);
  const sel = S.mode === "patches" ? new Set(S.selection) : new Set(S.picked !== null && S.picked !== undefined ? [S.picked] : []);
  // the class token's points (a Vim layer's): diamonds, drawn last; in the blocks mode's joint
  // points, one per layer (item cls of each block), labelled only in the patches mode
  const cls = clsOf(app, S.block), per = S.mode === "blocks" ? describePoints(app).per : n;
  const isCls = (/** @type {number} */ p) => cls !== null && (S.mode === "patches" || S.points === "joint") && p % per === cls;
  for (let p = 0; p < n; p++) {
    if (isCls(p)) continue;
    sctx.fillStyle = pc.cols[p];
    sctx.globalAlpha = sel.size > 1 && !sel.has(p) ? 0.45 : 1;
    sctx.beginPath(); sctx.arc(screen[2 * p], screen[2 * p + 1], rad, 0, 2 * Math.PI); sctx.fill();
  }
  sctx.globalAlpha = 1;
  for (let p = cls === null ? n : cls; p < n; p += per) if (isCls(p)) drawClsPoint(sctx, screen[2 * p], screen[2 * p + 1], rad + 4, pc.cols[p], S.mode === "patches");
  const ring = sel.size > 50 ? 1 : 2.5;
  for (const p of sel) {
    if (p >= n) continue;
    sctx.fillStyle = pc.cols[p]; sctx.strokeStyle = "#e0218a"; sctx.lineWidth = ring < 2 ? 1 : 2;
    if (isCls(p)) { drawClsPoint(sctx, screen[2 * p], screen[2 * p + 1], rad + 4 + ring, pc.cols[p], false); sctx.strokeStyle = "#e0218a"; sctx.lineWidth = 2; sctx.stroke(); continue; }
    sctx.beginPath(); sctx.arc(screen[2 * p], screen[2 * p + 1], rad + ring, 0, 2 * Math.PI); sctx.fill(); sctx.stroke();
  }
  if (S.hover >= 0 && S.mode === "patches") {
    sctx.strokeStyle = "#000"; sctx.lineWidth = 1.5;
    sctx.beginPath(); sctx.arc(screen[2 * S.hover], screen[2 * S.hover + 1], rad + 5, 0, 2 * Math.PI); sctx.stroke();
  }
  if (lasso && lasso.length > 1) {
    sctx.strokeStyle = "#333"; sctx.setLineDash([4, 3]); sctx.lineWidth = 1;
    sctx.beginPath(); sctx.moveTo(lasso[0][0], lasso[0][1]);
    for (const [x, y] of lasso) sctx.lineTo(x, y);
    sctx.closePath(); sctx.stroke(); sctx.setLineDash([]);
  }
  const mname = METHOD_NAMES[S.method] || S.method;
  ui.scatterLegend.innerHTML = "";
  if (S.mode === "patches") {
    ui.scatterTitle.textContent = cls === null ? `Scatterplot: the ${n} patches of ${S.block} by their attention rows (${mname})`
      : `Scatterplot: the ${n - 1} patches and the class token of ${S.block} (Vim layer) by their attention rows (${mname})`;
    ui.scatterLegend.textContent = `Order ${S.order}, ${subjectName(app, S.subject)}. Colour: ${pc.what} (0 … ${pc.top}, viridis). ` +
      (cls === null ? "" : "The class token: the outlined diamond labelled CLS" + (S.colorBy === "scan" ? " (coloured by its scan position). " : " (white: no grid row or column). ")) +
      (S.method === "pca" ? "Axes: the first two principal components." : "Distances are only locally meaningful.");
  } else {
    const st = blockOf(app, S.block).stage, d = describePoints(app);
    const where = cls === null ? `stage ${st}` : "the Vim model", unit = cls === null ? "blocks" : "layers";
    ui.scatterTitle.textContent = S.points === "interblock"
      ? `Inter-block: ${n} maps of ${where} (${d.blocks.length} ${unit} × ${d.per} images), ${mname}`
      : cls === null ? `Joint: the ${n} patches of the ${d.blocks.length} blocks of stage ${st} (mean maps), ${mname}`
        : `Joint: the ${n} tokens of the ${d.blocks.length} layers (${d.per - 1} patches and the class token each; mean maps), ${mname}`;
    ui.scatterLegend.append(`Order ${S.order}. Colour: ` + (d.blocks.length > 10 ? "depth, viridis (dark: first, yellow: last) — " : "block — "));
    d.blocks.forEach((b, j) => {
      const sw = el("span", { class: "jm-swatch" }); sw.style.background = css(blockColour(d.blocks.length, j));
      ui.scatterLegend.append(sw, ` ${b.replace("layers.", "").replace(".blocks.", ".")}  `);
    });
    if (cls !== null && S.points === "joint") ui.scatterLegend.append(" · diamonds: each layer's class token.");
  }
}

/**
 * The point nearest (x, y) within maxDist canvas pixels, -1 for none.
 * @param {Float32Array} screen
 * @param {number} x
 * @param {number} y
 * @param {number} maxDist
 * @returns {number}
 */
function nearest(screen, x, y, maxDist) {
  let best = -1, bd = maxDist * maxDist;
  for (let p = 0; p < screen.length / 2; p++) {
    const dx = screen[2 * p] - x, dy = screen[2 * p + 1] - y, d = dx * dx + dy * dy;
    if (d <= bd) { bd = d; best = p; }
  }
  return best;
}

/**
 * Whether (x, y) is inside the polygon (even-odd rule).
 * @param {number[][]} poly
 * @param {number} x
 * @param {number} y
 * @returns {boolean}
 */
function inside(poly, x, y) {
  let c = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) c = !c;
  }
  return c;
}
