/* The heat maps: the selection's mean row (or column) on the block's grid, over an image or not,
 * one panel or two side by side, with their captions, colour bars and loading notes. */

/** A class token's cell: beside the grid, CLS_GAP cells to the right of it, on the middle row
 *  (it is scanned in the middle of the sequence); a heat map with one is at most CLS_W wide. */
const CLS_GAP = 0.5, CLS_W = 600, CLS_MIN = 18;

/**
 * A grid's cells (and its class token's cell, if cls is not null) on a heat map's canvas.
 * @param {number[]} g  (h, w)
 * @param {number|null} [cls]  the class token's position (h·w), null for none
 * @param {number} [side]  the grid's largest side in pixels
 * @returns {{h: number, w: number, cell: number, W: number, H: number, gridW: number, cls: number|null,
 *   clsSide: number, gap: number}}
 */
function geom(g, cls = null, side = SIZE) {
  const c = cls === undefined ? null : cls, extra = c === null ? 0 : CLS_GAP + 1;
  const cell = c === null ? side / Math.max(g[0], g[1]) : Math.min(side / Math.max(g[0], g[1]), side * CLS_W / SIZE / (g[1] + extra));
  // a class token's cell: a grid cell's size, at least CLS_MIN pixels (visible beside small cells)
  const clsSide = c === null ? 0 : Math.max(cell, CLS_MIN), gap = c === null ? 0 : Math.max(CLS_GAP * cell, 5);
  return { h: g[0], w: g[1], cell, W: cell * g[1] + gap + clsSide, H: Math.max(cell * g[0], clsSide), gridW: cell * g[1], cls: c, clsSide, gap };
}

/** A cell of a map with nothing selected (the right panel's class token, on a grid without one). */
const NOTHING = "#ddd";

/** Token p's cell as [x, y, width, height]. @param {ReturnType<typeof geom>} G @param {number} p @returns {[number, number, number, number]} */
function cellBox(G, p) {
  const [x0, y0, x1, y1] = tokenRect(G, p);
  return [x0, y0, x1 - x0, y1 - y0];
}

/**
 * Token p's cell on a heat map of geometry G: [x0, y0, x1, y1] in canvas pixels (a class
 * token's beside the grid).
 * @param {ReturnType<typeof geom>} G
 * @param {number} p
 * @returns {number[]}
 */
function tokenRect(G, p) {
  if (p === G.cls) {
    const x0 = Math.round(G.gridW + G.gap), y0 = Math.round(Math.min(Math.floor((G.h - 1) / 2) * G.cell, G.H - G.clsSide));
    return [x0, y0, x0 + Math.round(G.clsSide), y0 + Math.round(G.clsSide)];
  }
  const col = p % G.w, r = Math.floor(p / G.w);
  return [Math.round(col * G.cell), Math.round(r * G.cell), Math.round((col + 1) * G.cell), Math.round((r + 1) * G.cell)];
}

/**
 * The token at canvas pixel (x, y) of a heat map of grid g (and class token cls): a patch, the
 * class token (cls), -1 outside them.
 * @param {number[]} g
 * @param {number} x
 * @param {number} y
 * @param {number|null} [cls]
 * @returns {number}
 */
function cellAt(g, x, y, cls = null) {
  const G = geom(g, cls);
  if (G.cls !== null) {
    const [x0, y0, x1, y1] = tokenRect(G, G.cls);
    if (x >= x0 && x < x1 && y >= y0 && y < y1) return G.cls;
  }
  const c = Math.floor(x / G.cell), r = Math.floor(y / G.cell);
  return r >= 0 && r < G.h && c >= 0 && c < G.w ? r * G.w + c : -1;
}

/**
 * Draw a class token's cell: its colour (over mid grey at `alpha` when the map is over an
 * image, as the colour bar is drawn), a dark frame and the label "CLS" (and "class token"
 * above it when the cell is large enough).
 * @param {CanvasRenderingContext2D} ctx
 * @param {ReturnType<typeof geom>} G
 * @param {RGB} colour
 * @param {number|null} alpha  null: opaque
 */
function drawClsCell(ctx, G, colour, alpha) {
  if (G.cls === null) return;
  const [x0, y0, x1, y1] = tokenRect(G, G.cls), s = x1 - x0;
  if (alpha !== null) { ctx.fillStyle = "rgb(128,128,128)"; ctx.fillRect(x0, y0, s, y1 - y0); }
  ctx.fillStyle = alpha === null ? css(colour) : css(colour, alpha);
  ctx.fillRect(x0, y0, s, y1 - y0);
  ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.setLineDash([]);
  ctx.strokeRect(x0 + 0.5, y0 + 0.5, s - 1, y1 - y0 - 1);
  const lum = (0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]) / 255;
  ctx.textAlign = "center"; ctx.textBaseline = "middle";
  ctx.fillStyle = lum > 0.55 || alpha !== null && alpha < 0.6 ? "#000" : "#fff";
  if (s >= 30) {  // "CLS" inside, "class token" above
    ctx.font = `bold ${Math.min(14, Math.floor(s / 3))}px system-ui, sans-serif`; ctx.fillText("CLS", x0 + s / 2, (y0 + y1) / 2 + 0.5);
    ctx.fillStyle = "#333"; ctx.textBaseline = "bottom"; ctx.font = "11px system-ui, sans-serif";
    ctx.fillText("class", x0 + s / 2, y0 - 14); ctx.fillText("token", x0 + s / 2, y0 - 2);
  } else {  // a small cell: its colour left whole, "CLS" above it
    ctx.fillStyle = "#333"; ctx.textBaseline = "bottom"; ctx.font = "9px system-ui, sans-serif";
    ctx.fillText("CLS", x0 + s / 2, y0 - 3);
  }
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
    im.onload = () => render(app.home || app);  // a companion's view: the page drawn again
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
 * @param {number|null} cls  the class token's position (h·w), drawn beside the grid; null: none
 * @param {Float32Array} values  (L,): h·w patches (then the class token)
 * @param {number[]} sel
 * @param {string} subject
 * @param {number} hover
 * @param {Scale} sc
 * @returns {number}
 */
function drawHeat(app, cv, g, cls, values, sel, subject, hover, sc) {
  const S = app.state, routes = app.data.routes, rect = app.pointer.rect;
  const G = geom(g, cls), n = G.h * G.w, ctx = cv.getContext("2d");
  cv.width = Math.round(G.W); cv.height = Math.round(G.H);
  ctx.clearRect(0, 0, cv.width, cv.height);
  const u = underlay(app, subject), back = u >= 0 ? backdrop(app, u, Math.round(G.gridW), cv.height, S.underlay) : null;
  if (back) ctx.drawImage(back, 0, 0);
  for (let q = 0; q < n; q++) {
    if (!isFinite(values[q])) { if (!back) { ctx.fillStyle = NOTHING; ctx.fillRect(...cellBox(G, q)); } continue; }
    const c = colourOf(sc, values[q]);
    ctx.fillStyle = back ? css(c, S.opacity) : css(c);
    const [x0, y0, x1, y1] = tokenRect(G, q);
    ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
  }
  if (G.cls !== null && isFinite(values[G.cls])) drawClsCell(ctx, G, colourOf(sc, values[G.cls]), back ? S.opacity : null);
  else if (G.cls !== null) drawClsCell(ctx, G, [221, 221, 221], null);
  if (S.showPath && routes && cv === app.ui.heatCv && S.mode === "patches") {
    // the scan path over the grid's patches; a class token (not on the grid) is left out
    const k = scanRoute(S), L = n + (G.cls === null ? 0 : 1);
    const path = Array.from(routes.subarray(k * L, (k + 1) * L)).filter((p) => p !== G.cls);
    ctx.strokeStyle = "rgba(0,200,255,0.7)"; ctx.lineWidth = Math.max(1, Math.min(3, G.cell / 16));
    ctx.beginPath();
    path.forEach((p, t) => {
      const x = (p % G.w + 0.5) * G.cell, y = (Math.floor(p / G.w) + 0.5) * G.cell;
      if (t === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const p0 = path[0];
    ctx.fillStyle = "rgba(0,200,255,1)";
    ctx.beginPath(); ctx.arc((p0 % G.w + 0.5) * G.cell, (Math.floor(p0 / G.w) + 0.5) * G.cell, Math.max(2, G.cell / 5), 0, 2 * Math.PI); ctx.fill();
  }
  // the selection: outlined (it may be off the scale) in green on a dark rim, visible on any
  // colour of the maps; a single small cell gets a frame around it, leaving its colour visible
  const one = sel.length === 1 && G.cell < 16, o = one ? 2.5 : 0;
  for (const [colour, width] of /** @type {[string, number][]} */ ([["rgba(0,0,0,0.8)", one ? 4 : 2.5], [sel.length > 1 ? "rgba(0,230,90,0.85)" : "#00e65a", one ? 2 : 1.5]])) {
    ctx.lineWidth = width; ctx.strokeStyle = colour;
    for (const p of sel) { const [x0, y0, x1, y1] = tokenRect(G, p); ctx.strokeRect(x0 + 1 - o, y0 + 1 - o, x1 - x0 - 2 + 2 * o, y1 - y0 - 2 + 2 * o); }
  }
  if (hover >= 0) {
    const [x0, y0, x1, y1] = tokenRect(G, hover);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  if (rect && rect.cv === cv) {
    ctx.strokeStyle = "#000"; ctx.setLineDash([4, 3]);
    ctx.strokeRect(Math.min(rect.x0, rect.x1), Math.min(rect.y0, rect.y1), Math.abs(rect.x1 - rect.x0), Math.abs(rect.y1 - rect.y0));
    ctx.setLineDash([]);
  }
  cv.setAttribute("data-selected", sel.join(","));
  cv.setAttribute("data-cls", G.cls === null ? "" : String(G.cls));
  cv.setAttribute("data-underlay", back ? S.underlay + ":" + u : "none");
  return back ? u : -1;
}

/**
 * The scale's leave-out set of a map: the selection (when the scale leaves it out) and the
 * class token (never on the scale: its cell is coloured on the patches' scale, clipped).
 * @param {number[]} sel
 * @param {number|null} cls
 * @param {boolean} noSelf
 * @param {number} [offset]  where the map starts in the values scaled
 * @returns {number[]}
 */
function scaleSkip(sel, cls, noSelf, offset = 0) {
  return (noSelf ? sel : []).concat(cls === null ? [] : [cls]).map((p) => p + offset);
}

/**
 * What a class token's cell shows, in words, for a map of selection `sel`.
 * @param {App} app
 * @param {number[]} sel
 * @param {number|null} cls
 * @param {number} value  the class token's entry
 * @param {Scale} sc
 * @returns {string}
 */
function clsNote(app, sel, cls, value, sc) {
  if (cls === null) return "";
  const own = sel.length === 1 && sel[0] === cls, q = app.state.direction === "query";
  const what = own ? "the class token's weight on itself" : q ? "what the selection reads from the class token"
    : "what the class token reads from the selection";
  const off = value > sc.hi || value < sc.lo ? ", off the bar (drawn in the end colour)" : "";
  return ` CLS cell (right of the grid): ${what}, ${fmt(value)}${off}; it is coloured on the same scale but never sets it ` +
    `(the scale is over the patches${app.state.noSelf && sel.some((p) => p !== cls) ? " not selected" : ""}).`;
}

/**
 * A heat map's caption: what the map is (the block, the token selected, the order, the model),
 * the image under it, its colour scale.
 * @param {App} app
 * @param {string} order
 * @param {string} block
 * @param {string} subject
 * @param {number[]} sel
 * @param {number} u  the image under the map, -1 for none
 * @param {Scale} sc
 * @param {Float32Array} values
 * @param {string} [route]  the route of the map (default: the route shown)
 * @returns {string}
 */
function captionFor(app, order, block, subject, sel, u, sc, values, route = app.state.route) {
  const M = app.meta, S = app.state, cls = clsOf(app, block), model = orderOf(app, order).model;
  if (!sel.length) {
    return `Nothing selected on this grid: the other panel's selection is a class token, and ${blockName(app, block)} has none ` +
      "(a VMamba block: only patches). Click a cell of either panel to select image patches.";
  }
  let text = (subject === "mean" ? `Mean attention over ${M.count} images` : `Attention of the single ${subjectName(app, subject)}`) +
    `, ${blockName(app, block)}` + (cls !== null && sel.length === 1 && sel[0] === cls
    ? ", class token: " + (S.direction === "query" ? "what it reads from each patch" : "how much each patch reads from it") : "") +
    `, order ${order}` + (model ? `, model ${model}` : "") + ", " + routeText(app, order, route) + ". ";
  if (u >= 0) {
    text += (subject === "mean" ? `Drawn over image “${M.images[u].name}” (one of the averaged images)` : "Drawn over that image") +
      (S.underlay === "grey" ? ", shown in grey (desaturated, dimmed)" : ", shown in colour") +
      `; the map at opacity ${S.opacity} (the bar drawn the same way over mid grey). `;
  } else text += "No image under the map; opaque colours. ";
  text += "Colour: " + describeScale(sc) + ". ";
  text += S.noSelf ? `The selected ${cls === null ? "patches" : "tokens"} are outlined and may be off the scale (left out of it).`
    : "The scale includes the selected patches (outlined).";
  if (cls !== null) text += clsNote(app, sel, cls, values[cls], sc);
  return text;
}

/** Side by side: whether the two panels show two models (a companion study), or differ in stage
 *  or in kind of map (mean vs one image): then a colour scale each.
 * @param {App} app
 * @returns {{panel: boolean, why: string}}
 */
function compareRule(app) {
  const S = app.state;
  if (S.B.study) {
    const vB = viewB(app), a = modelShort(app, S.order) || "this study's model", b = modelShort(vB, S.B.order) || "the companion's model";
    return { panel: true, why: `two models (${a}; ${b}): their attention values are not on one scale` };
  }
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
  const vB = viewB(app), clsA = clsOf(app, S.block), clsB = both ? clsOf(vB, S.B.block) : null;
  if (both && !perPanel(app)) {
    const values = new Float32Array(heatA.length + heatB.length);
    values.set(heatA); values.set(heatB, heatA.length);
    const skip = new Set([...scaleSkip(selA, clsA, S.noSelf), ...scaleSkip(selB, clsB, S.noSelf, heatA.length)]);
    D.scale = D.scaleB = scaleFor(values, signed, skip, S.scale);
  } else {
    D.scale = scaleFor(heatA, signed, new Set(scaleSkip(selA, clsA, S.noSelf)), S.scale);
    D.scaleB = both ? scaleFor(heatB, signed || vB.meta.signed, new Set(scaleSkip(selB, clsB, S.noSelf)), S.scale) : null;
  }
  const g = grid(app), uA = drawHeat(app, ui.heatCv, g, clsA, heatA, selA, S.subject, S.hover, D.scale);
  ui.heatCv.setAttribute("data-block", S.block);
  ui.heatCv.setAttribute("data-subject", S.subject);
  const selText = selectionName(selA, g, clsA);
  const q = S.direction === "query", verb = q ? " attends to" : " is attended by";
  const clsOnly = clsA !== null && selA.length === 1 && selA[0] === clsA;
  const two = both && S.B.study !== 0, none = "nothing selected here (the right panel's class token: this block has none)";
  ui.heatTitle.textContent = (S.mode === "compare" ? (two ? `Left, this study (${modelShort(app, S.order)}, ${S.block}): ` : "Left: ") : "Patch view: ") +
    (!selA.length ? none : clsOnly ? (q ? "the class token: what it reads from each patch" : "the class token: how much each patch reads from it")
      : selText + verb);
  ui.caption.textContent = captionFor(app, S.order, S.block, S.subject, selA, uA, D.scale, heatA);
  drawColorbar(ui.bar, D.scale, uA >= 0 ? S.opacity : null);
  ui.bar.cv.parentElement.classList.toggle("hidden", !selA.length);  // nothing selected: no scale
  if (both) {
    const gB = gridB(app), uB = drawHeat(vB, ui.heatCvB, gB, clsB, heatB, selB, S.B.subject, -1, D.scaleB), split = D.scaleB !== D.scale;
    ui.heatCvB.setAttribute("data-block", S.B.block);
    ui.heatCvB.setAttribute("data-study", String(S.B.study));
    ui.heatTitleB.textContent = (two ? `Right, companion ${/** @type {CompanionMeta} */ (vB.meta).folder} (${modelShort(vB, S.B.order)}, ${S.B.block}): ` : "Right: ") +
      (!selB.length ? "nothing selected here (the left panel's class token: this block has none)"
        : clsB !== null && selB.length === 1 && selB[0] === clsB
          ? (q ? "its class token: what it reads from each patch" : "its class token: how much each patch reads from it")
          : selectionName(selB, gB, clsB) + " (the same image area)" + verb);
    const why = S.compareScale === "auto" ? ` (automatic: ${compareRule(app).why})` : "";
    const scalesText = split ? "Each panel on its own colour scale" + why + ": this panel's bar is below it."
      : "One colour scale for both panels" + why + ": the bar under the left panel.";
    ui.caption.textContent += " " + scalesText;
    const whose = two ? `Panel B: ${studyLabel(app, S.B.study)}, ${S.B.block}` +
      (clsB !== null && selB.length === 1 && selB[0] === clsB ? ", class token" : "") + ". " : "";
    if (two) ui.caption.textContent = `Panel A: ${studyLabel(app, 0)}, ${S.block}. ` + ui.caption.textContent;
    ui.captionB.textContent = whose + captionFor(vB, S.B.order, S.B.block, S.B.subject, selB, uB, D.scaleB, heatB, routeB(app)) +
      (routeB(app) !== S.route ? ` (the left panel's ${routeText(app, S.order, S.route)} is not in this study: its ${routeText(vB, S.B.order, "sum")} shown)` : "") +
      " " + scalesText;
    ui.barBoxB.classList.toggle("hidden", !split);
    if (split) drawColorbar(ui.barB, D.scaleB, uB >= 0 ? S.opacity : null);
  }
  const name = (/** @type {number} */ p) => p === clsA ? "CLS" : rowCol(p, g);
  if (!selA.length) { ui.info.textContent = "selected: nothing on this grid (the right panel's class token)"; return; }
  ui.info.textContent = "selected: " + selA.slice(0, 12).map(name).join(" ") + (selA.length > 12 ? " …" : "") +
    (S.hover >= 0 ? " · hover " + (S.hover === clsA ? "the class token" : rowCol(S.hover, g)) + " value " + fmt(heatA[S.hover]) : "") +
    ` · data range ${fmt(D.scale.dataLo)} … ${fmt(D.scale.dataHi)}` + (clsA !== null ? ` (patches) · class token ${fmt(heatA[clsA])}` : "");
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

/** The study's findings of the order and block shown; a Vim order's also by depth (the means
 *  over its earlier and later layers: an isotropic model's "hierarchy"). @param {App} app */
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
  // a Vim order's layers as the study's findings hold them (an export may hold fewer)
  const vim = clsOf(app, S.block) !== null, stageBlocks = vim ? Object.keys(f.blocks) : (stageOf(app, st) || { blocks: [] }).blocks;
  const half = Math.floor(stageBlocks.length / 2), span = (/** @type {string[]} */ bs) => bs.length ? bs[0] + "–" + bs[bs.length - 1].replace(/^layers\./, "") : "";
  const depth = f.depth ? ` Depth: early layers (${span(stageBlocks.slice(0, half))}) distance ${frac(f.depth.early)}, locality ρ ${num(f.depth.early.sequence_locality)}; ` +
    `late layers (${span(stageBlocks.slice(half))}) distance ${frac(f.depth.late)}, locality ρ ${num(f.depth.late.sequence_locality)}.` : "";
  out.textContent = `Findings, order ${S.order}, mean maps${vim ? " (on the patches; the class token left out)" : ""}. ` +
    (vim ? `All ${stageBlocks.length} layers` : `Stage ${st}`) + `: ${vim ? "layer" : "block"} distinctness ${num(fs.block_distinctness)} ` +
    `(silhouette of ${vim ? "layer" : "block"} labels, patches embedded jointly)` +
    (fs.image_block_distinctness !== undefined && fs.image_block_distinctness !== null
      ? `, across images ${num(fs.image_block_distinctness)} (silhouette of ${vim ? "layer" : "block"} labels of the (image, ${vim ? "layer" : "block"}) maps)` : "") +
    `; attention distance ${frac(fs)} of the grid diagonal; sequence locality ρ ${num(fs.sequence_locality)}.` + depth +
    ` ${vim ? "Layer" : "Block"} ${S.block}: distance ${frac(fb)}, locality ρ ${num(fb.sequence_locality)}.`;
}
