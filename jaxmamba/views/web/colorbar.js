/* A colour bar: a scale's colours, its ticks labelled where they fit, and how it is made. */

/** A colour bar of scale sc: the colours at t = 0..1 (over mid grey at the maps' opacity when
 *  the map is over an image, so the colours are the map's), its ticks at their t, labelled
 *  where they fit, and a note saying how the scale is made.
 * @param {ColourBar} bar
 * @param {Scale} sc
 * @param {number|null} opacity  the maps' opacity over an image; null: opaque, no image
 */
function drawColorbar(bar, sc, opacity) {
  const cv = bar.cv, tk = bar.ticks, ctx = cv.getContext("2d"), W = cv.width, H = cv.height;
  const overImage = opacity !== null;
  ctx.clearRect(0, 0, W, H);
  if (overImage) { ctx.fillStyle = "rgb(128,128,128)"; ctx.fillRect(0, 0, W, H); }
  for (let x = 0; x < W; x++) {
    const c = lerp(sc.stops, x / (W - 1));
    ctx.fillStyle = overImage ? css(c, opacity) : css(c);
    ctx.fillRect(x, 0, 1, H);
  }
  tk.innerHTML = "";
  const n = sc.ticks.length, mid = sc.ticks.findIndex((t) => t.v === 0);
  // labels in order of importance (the ends, then 0, then the rest from the top down); a
  // label that would overlap one already placed keeps only its tick mark
  const order = [n - 1, 0].concat(mid > 0 && mid < n - 1 ? [mid] : []);
  for (let i = n - 2; i > 0; i--) if (!order.includes(i)) order.push(i);
  /** @type {number[][]} */
  const placed = [];
  /** @type {HTMLSpanElement[]} */
  const spans = sc.ticks.map(() => null);
  for (const i of order) {
    const t = sc.ticks[i], x = t.pos * W, w = t.label.length * 6.5 + 6;
    const left = t.pos < 0.02 ? x : t.pos > 0.98 ? x - w : x - w / 2;
    const fits = placed.every(([a, b]) => left + w <= a || left >= b);
    if (fits) placed.push([left, left + w]);
    const at = t.pos < 0.02 ? "jm-t-start" : t.pos > 0.98 ? "jm-t-end" : "jm-t-mid";
    const s = el("span", { class: "jm-tick " + at, text: fits ? t.label : "" });
    s.style.left = (100 * t.pos) + "%";
    s.title = fmt(t.v);
    spans[i] = s;
  }
  for (const s of spans) tk.appendChild(s);
  bar.note.textContent = sc.kind === "log" ? `log scale (symlog): decades marked; linear below 1e-3 × max (|v| ≤ ${fmt(sc.band)})`
    : sc.kind === "rank" ? "rank scale: position = quantile among the map's values; labels = the values at quantiles 0, ¼, ½, ¾, 1"
      : "linear scale";
}
