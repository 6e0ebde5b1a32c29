/* The heat maps: the selection's mean row (or column) on the block's grid, over an image or not,
 * one panel or two side by side, with their captions, colour bars and loading notes. */

/**
 * A grid's cells on a heat map's canvas.
 * @param {number[]} g  (h, w)
 * @returns {{h: number, w: number, cell: number, W: number, H: number}}
 */
function geom(g) {
  const cell = SIZE / Math.max(g[0], g[1]);
  return { h: g[0], w: g[1], cell, W: cell * g[1], H: cell * g[0] };
}

/**
 * The patch at canvas pixel (x, y) of a heat map of grid g, -1 outside it.
 * @param {number[]} g
 * @param {number} x
 * @param {number} y
 * @returns {number}
 */
function cellAt(g, x, y) {
  const G = geom(g), c = Math.floor(x / G.cell), r = Math.floor(y / G.cell);
  return r >= 0 && r < G.h && c >= 0 && c < G.w ? r * G.w + c : -1;
}

/** The image under a map: a single image's map is drawn over that image; a mean map over
 *  the image chosen in the menu; -1 for none (the "image under the map" control).
 * @param {App} app
 * @param {string} subject
 * @returns {number}
 */
function underlay(app, subject) {
  if (app.state.underlay === "none") return -1;
  if (subject !== "mean") return app.meta.single_images[+subject].image;
  return app.state.image;
}

/**
 * Image i, loading (drawn again once loaded).
 * @param {App} app
 * @param {number} i
 * @returns {HTMLImageElement}
 */
function imageEl(app, i) {
  if (!app.images.has(i)) {
    const im = new Image();
    im.onload = () => render(app);
    Promise.resolve(app.source.imageUrl(i)).then((u) => { im.src = u; });
    app.images.set(i, im);
  }
  return app.images.get(i);
}

/** Image u drawn at W×H, in colour or in grey (luminance 0.299R+0.587G+0.114B dimmed to
 *  0.25 + 0.5·lum); null until the image has loaded.
 * @param {App} app
 * @param {number} u
 * @param {number} W
 * @param {number} H
 * @param {string} how  "grey" or "colour"
 * @returns {HTMLCanvasElement|null}
 */
function backdrop(app, u, W, H, how) {
  const img = imageEl(app, u), backdrops = app.backdrops;
  if (!(img.complete && img.naturalWidth)) return null;
  const key = [u, W, H, how].join("|");
  if (!backdrops.has(key)) {
    const c = document.createElement("canvas");
    c.width = W; c.height = H;
    const x = c.getContext("2d");
    x.drawImage(img, 0, 0, W, H);
    if (how === "grey") {
      try {
        const d = x.getImageData(0, 0, W, H), px = d.data;
        for (let i = 0; i < px.length; i += 4) {
          const lum = (0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2]) / 255;
          px[i] = px[i + 1] = px[i + 2] = Math.round(255 * (0.25 + 0.5 * lum));
          px[i + 3] = 255;
        }
        x.putImageData(d, 0, 0);
      } catch (e) {  // pixels not readable (a cross-origin image): the browser's filters, nearly the same
        x.clearRect(0, 0, W, H);
        x.filter = "grayscale(1) contrast(0.5)";
        x.drawImage(img, 0, 0, W, H);
        x.filter = "none";
      }
    }
    if (backdrops.size > 24) backdrops.delete(backdrops.keys().next().value);
    backdrops.set(key, c);
  }
  return backdrops.get(key);
}

/**
 * Draw one heat map on canvas cv with scale sc; returns the image under it (-1: none).
 * @param {App} app
 * @param {HTMLCanvasElement} cv
 * @param {number[]} g
 * @param {Float32Array} values  (h w,)
 * @param {number[]} sel
 * @param {string} subject
 * @param {number} hover
 * @param {Scale} sc
 * @returns {number}
 */
function drawHeat(app, cv, g, values, sel, subject, hover, sc) {
  const S = app.state, routes = app.data.routes, rect = app.pointer.rect;
  const G = geom(g), n = G.h * G.w, ctx = cv.getContext("2d");
  cv.width = Math.round(G.W); cv.height = Math.round(G.H);
  ctx.clearRect(0, 0, cv.width, cv.height);
  const u = underlay(app, subject), back = u >= 0 ? backdrop(app, u, cv.width, cv.height, S.underlay) : null;
  if (back) ctx.drawImage(back, 0, 0);
  for (let q = 0; q < n; q++) {
    const c = colourOf(sc, values[q]);
    ctx.fillStyle = back ? css(c, S.opacity) : css(c);
    const col = q % G.w, r = Math.floor(q / G.w), x0 = Math.round(col * G.cell), y0 = Math.round(r * G.cell);
    ctx.fillRect(x0, y0, Math.round((col + 1) * G.cell) - x0, Math.round((r + 1) * G.cell) - y0);
  }
  if (S.showPath && routes && cv === app.ui.heatCv && S.mode === "patches") {
    const k = scanRoute(S);
    ctx.strokeStyle = "rgba(0,200,255,0.7)"; ctx.lineWidth = Math.max(1, Math.min(3, G.cell / 16));
    ctx.beginPath();
    for (let t = 0; t < n; t++) {
      const p = routes[k * n + t], x = (p % G.w + 0.5) * G.cell, y = (Math.floor(p / G.w) + 0.5) * G.cell;
      if (t === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.stroke();
    const p0 = routes[k * n];
    ctx.fillStyle = "rgba(0,200,255,1)";
    ctx.beginPath(); ctx.arc((p0 % G.w + 0.5) * G.cell, (Math.floor(p0 / G.w) + 0.5) * G.cell, Math.max(2, G.cell / 5), 0, 2 * Math.PI); ctx.fill();
  }
  // the selection: outlined (it may be off the scale) in green on a dark rim, visible on any
  // colour of the maps; a single small cell gets a frame around it, leaving its colour visible
  const one = sel.length === 1 && G.cell < 16, o = one ? 2.5 : 0;
  for (const [colour, width] of /** @type {[string, number][]} */ ([["rgba(0,0,0,0.8)", one ? 4 : 2.5], [sel.length > 1 ? "rgba(0,230,90,0.85)" : "#00e65a", one ? 2 : 1.5]])) {
    ctx.lineWidth = width; ctx.strokeStyle = colour;
    for (const p of sel) ctx.strokeRect((p % G.w) * G.cell + 1 - o, Math.floor(p / G.w) * G.cell + 1 - o, G.cell - 2 + 2 * o, G.cell - 2 + 2 * o);
  }
  if (hover >= 0) {
    ctx.strokeStyle = "#000";
    ctx.strokeRect((hover % G.w) * G.cell, Math.floor(hover / G.w) * G.cell, G.cell, G.cell);
  }
  if (rect && rect.cv === cv) {
    ctx.strokeStyle = "#000"; ctx.setLineDash([4, 3]);
    ctx.strokeRect(Math.min(rect.x0, rect.x1), Math.min(rect.y0, rect.y1), Math.abs(rect.x1 - rect.x0), Math.abs(rect.y1 - rect.y0));
    ctx.setLineDash([]);
  }
  cv.setAttribute("data-selected", sel.join(","));
  cv.setAttribute("data-underlay", back ? S.underlay + ":" + u : "none");
  return back ? u : -1;
}

/**
 * A heat map's caption: what the map is, the image under it, its colour scale.
 * @param {App} app
 * @param {string} order
 * @param {string} block
 * @param {string} subject
 * @param {number} u  the image under the map, -1 for none
 * @param {Scale} sc
 * @returns {string}
 */
function captionFor(app, order, block, subject, u, sc) {
  const M = app.meta, S = app.state, g = blockOf(app, block).grid;
  let text = (subject === "mean" ? `Mean attention over ${M.count} images` : `Attention of the single ${subjectName(app, subject)}`) +
    `, ${block} (${g[0]}×${g[1]}), order ${order}, ` + (S.route === "sum" ? "routes summed" : "route " + S.route) + ". ";
  if (u >= 0) {
    text += (subject === "mean" ? `Drawn over image “${M.images[u].name}” (one of the averaged images)` : "Drawn over that image") +
      (S.underlay === "grey" ? ", shown in grey (desaturated, dimmed)" : ", shown in colour") +
      `; the map at opacity ${S.opacity} (the bar drawn the same way over mid grey). `;
  } else text += "No image under the map; opaque colours. ";
  text += "Colour: " + describeScale(sc) + ". ";
  text += S.noSelf ? "The selected patches are outlined and may be off the scale (left out of it)."
    : "The scale includes the selected patches (outlined).";
  return text;
}

/** Side by side: whether the two panels differ in stage or in kind of map (mean vs one image).
 * @param {App} app
 * @returns {{panel: boolean, why: string}}
 */
function compareRule(app) {
  const S = app.state;
  const stage = blockOf(app, S.block).stage !== blockOf(app, S.B.block).stage;
  const kind = (S.subject === "mean") !== (S.B.subject === "mean");
  return { panel: stage || kind, why: stage ? "the panels are of different stages"
    : kind ? "a mean map beside a single image's" : "same stage, same kind of map" };
}

/** Whether the two panels get a colour scale each. @param {App} app @returns {boolean} */
function perPanel(app) {
  return app.state.compareScale === "auto" ? compareRule(app).panel : app.state.compareScale === "panel";
}

/** The heat map (two side by side), their scales, titles, captions, bars and the info line.
 * @param {App} app
 */
function drawHeats(app) {
  const S = app.state, ui = app.ui, D = app.data, heatA = D.heatA, heatB = D.heatB, signed = app.meta.signed;
  if (!heatA) return;
  const both = S.mode === "compare" && !!heatB;
  const selA = S.selection, selB = both ? selectionB(app) : [];
  if (both && !perPanel(app)) {
    const values = new Float32Array(heatA.length + heatB.length);
    values.set(heatA); values.set(heatB, heatA.length);
    const skip = S.noSelf ? new Set([...selA, ...selB.map((p) => p + heatA.length)]) : null;
    D.scale = D.scaleB = scaleFor(values, signed, skip, S.scale);
  } else {
    D.scale = scaleFor(heatA, signed, S.noSelf ? new Set(selA) : null, S.scale);
    D.scaleB = both ? scaleFor(heatB, signed, S.noSelf ? new Set(selB) : null, S.scale) : null;
  }
  const g = grid(app), uA = drawHeat(app, ui.heatCv, g, heatA, selA, S.subject, S.hover, D.scale);
  ui.heatCv.setAttribute("data-block", S.block);
  ui.heatCv.setAttribute("data-subject", S.subject);
  const selText = selA.length === 1 ? "patch " + rowCol(selA[0], g) : "mean of " + selA.length + " patches";
  const verb = S.direction === "query" ? " attends to" : " is attended by";
  ui.heatTitle.textContent = (S.mode === "compare" ? "Left: " : "Patch view: ") + selText + verb;
  ui.caption.textContent = captionFor(app, S.order, S.block, S.subject, uA, D.scale);
  drawColorbar(ui.bar, D.scale, uA >= 0 ? S.opacity : null);
  if (both) {
    const gB = gridB(app), uB = drawHeat(app, ui.heatCvB, gB, heatB, selB, S.B.subject, -1, D.scaleB), split = D.scaleB !== D.scale;
    ui.heatCvB.setAttribute("data-block", S.B.block);
    ui.heatTitleB.textContent = "Right: " + (selB.length === 1 ? "patch " + rowCol(selB[0], gB) : "mean of " + selB.length + " patches") +
      " (the same image area)" + verb;
    const why = S.compareScale === "auto" ? ` (automatic: ${compareRule(app).why})` : "";
    const scalesText = split ? "Each panel on its own colour scale" + why + ": this panel's bar is below it."
      : "One colour scale for both panels" + why + ": the bar under the left panel.";
    ui.caption.textContent += " " + scalesText;
    ui.captionB.textContent = captionFor(app, S.B.order, S.B.block, S.B.subject, uB, D.scaleB) + " " + scalesText;
    ui.barBoxB.classList.toggle("hidden", !split);
    if (split) drawColorbar(ui.barB, D.scaleB, uB >= 0 ? S.opacity : null);
  }
  ui.info.textContent = "selected: " + selA.slice(0, 12).map((p) => rowCol(p, g)).join(" ") + (selA.length > 12 ? " …" : "") +
    (S.hover >= 0 ? " · hover " + rowCol(S.hover, g) + " value " + fmt(heatA[S.hover]) : "") +
    ` · data range ${fmt(D.scale.dataLo)} … ${fmt(D.scale.dataHi)}`;
}

/** The heat panels while a map is loaded or computed: the old map dimmed under a note.
 * @param {App} app
 */
function showLoading(app) {
  const ui = app.ui, { loading, lastError } = app.run;
  for (const [panel, box, text] of /** @type {[HTMLElement, HTMLElement, string][]} */ (
    [[ui.heatPanel, ui.loadingA, loading && loading.a], [ui.heatPanelB, ui.loadingB, loading && loading.b]])) {
    const failed = !loading && lastError && app.data.heatA;
    const msg = failed ? "could not load this map: " + lastError : loading && loading.shown ? text : "";
    box.textContent = msg || "";
    box.classList.toggle("jm-failed", !!failed);
    panel.classList.toggle("jm-busy", !!msg);
  }
}

/** The study's findings of the order and block shown. @param {App} app */
function drawFindings(app) {
  const S = app.state, out = app.ui.findings, f = app.meta.findings && app.meta.findings[S.order];
  if (!f) { out.textContent = ""; return; }
  const b = blockOf(app, S.block), st = b.stage, fs = f.stages[String(st)] || {}, fb = f.blocks[S.block] || {};
  const num = (/** @type {number|null|undefined} */ v) => v === null || v === undefined ? "–" : fmt(v);
  // the distance as a fraction of the grid diagonal (attention_distance_norm; studies written
  // before it was stored held that fraction under attention_distance)
  const frac = (/** @type {Object<string, any>} */ e) => num("attention_distance_norm" in e ? e.attention_distance_norm : e.attention_distance);
  // findings on fewer than 16 patches (jaxmamba.attention.findings.MIN_PATCHES) mean nothing: never shown
  // as numbers (studies written before jaxmamba stored null for them hold numbers)
  const MIN_FINDING_PATCHES = 16, g = (b.grid || [0, 0]), few = g[0] * g[1] < MIN_FINDING_PATCHES;
  if (few) {
    out.textContent = `Findings, order ${S.order}, stage ${st} (${g[0]}×${g[1]} grid): too few patches ` +
      `(${g[0] * g[1]}, fewer than ${MIN_FINDING_PATCHES}) for block distinctness, sequence locality or attention distance to mean anything.`;
    return;
  }
  out.textContent = `Findings, order ${S.order}, mean maps. Stage ${st}: block distinctness ${num(fs.block_distinctness)} ` +
    `(silhouette of block labels, patches embedded jointly)` +
    (fs.image_block_distinctness !== undefined && fs.image_block_distinctness !== null
      ? `, across images ${num(fs.image_block_distinctness)} (silhouette of block labels of the (image, block) maps)` : "") +
    `; attention distance ${frac(fs)} of the grid diagonal; sequence locality ρ ${num(fs.sequence_locality)}. ` +
    `Block ${S.block}: distance ${frac(fb)}, locality ρ ${num(fb.sequence_locality)}.`;
}
