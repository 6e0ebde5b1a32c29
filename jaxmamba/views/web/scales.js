/* Colour scales (the shared contract of the explorer and the static figures). */

/** Colour scales (the shared contract of the explorer and the static figures).
 *
 *  scaleFor(values, signed, skip, kind): the scale of a map's values without the indices in
 *  `skip` (the selected patches, by default). m = max |v| over those data; the domain is [0, m]
 *  (sequential, inferno) or [-m, m] for signed maps (diverging RdBu, white at 0).
 *    "linear": t = v / m, or 0.5 + 0.5 v / m when signed;
 *    "log":    symlog (matplotlib's SymLogNorm, linscale 1, base 10) with a linear band
 *              |v| <= c = 1e-3 · m: T(a) = a·s inside it, else sign(a)·c·(s + log10(|a| / c)),
 *              s = 1 / (1 - 1/10); t = T(v) / T(m), or 0.5 + 0.5 T(v) / T(m);
 *    "rank":   t = the value's quantile among the data (average rank of ties / (n - 1),
 *              interpolated linearly between the data's values), or 0.5 + 0.5 sign(v) q(|v|).
 *  Values outside the domain are clipped to the end colours. Returns {kind, signed, lo, hi,
 *  dataLo, dataHi, m, band, t(v), stops, ticks: [{v, pos, label}]} (pos in 0..1 = t(v)). */
const SYMLOG_BAND = 1e-3, SYMLOG_S = 1 / (1 - 1 / 10);
const SCALE_KINDS = ["linear", "log", "rank"];
/**
 * @param {ArrayLike<number>} values
 * @param {boolean} signed
 * @param {Set<number>|null} [skip]
 * @param {string} [kind]
 * @returns {Scale}
 */
function scaleFor(values, signed, skip, kind = "log") {
  if (!SCALE_KINDS.includes(kind)) throw new Error("no colour scale " + kind);
  /** @type {number[]} */
  const data = [];
  let dataLo = Infinity, dataHi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    if (skip && skip.has(i)) continue;
    const v = values[i];
    if (!isFinite(v)) continue;
    data.push(v);
    if (v < dataLo) dataLo = v;
    if (v > dataHi) dataHi = v;
  }
  if (!data.length) { dataLo = 0; dataHi = 0; }
  const sgn = !!signed || dataLo < 0;
  let m = 0;
  for (const v of data) if (Math.abs(v) > m) m = Math.abs(v);
  if (!(m > 0)) m = 1;  // an all-zero (or empty) map: any scale shows it as 0
  /** @type {Scale} */
  const out = { t: (v) => v, ticks: [], kind, signed: sgn, lo: sgn ? -m : 0, hi: m, dataLo, dataHi, m, band: null, n: data.length,
    stops: sgn ? RDBU : INFERNO };
  /** @type {(f: (v: number) => number) => (v: number) => number} */
  const wrap = (f) => sgn ? (v) => 0.5 + 0.5 * f(v) : f;  // f: v -> -1..1 (signed) or 0..1
  /** @type {(v: number, label?: string) => {v: number, pos: number, label: string}} */
  const tick = (v, label) => ({ v, pos: Math.min(1, Math.max(0, out.t(v))), label: label === undefined ? fmt(v) : label });
  if (kind === "linear") {
    out.t = wrap((v) => v / m);
    const vs = sgn ? [-m, -m / 2, 0, m / 2, m] : [0, m / 4, m / 2, 3 * m / 4, m];
    out.ticks = vs.map((v) => tick(v));
  } else if (kind === "log") {
    const c = SYMLOG_BAND * m, T = (/** @type {number} */ a) => Math.abs(a) <= c ? a * SYMLOG_S : Math.sign(a) * c * (SYMLOG_S + Math.log10(Math.abs(a) / c));
    const Tm = T(m);
    out.band = c;
    out.t = wrap((v) => T(v) / Tm);
    const dec = [];
    for (let k = Math.ceil(Math.log10(c) - 1e-9); Math.pow(10, k) <= m * (1 + 1e-9); k++) {
      const d = Math.pow(10, k);
      if (d >= c * (1 - 1e-9)) dec.push(d);
    }
    const pos = [0, ...dec.filter((d) => d < m * (1 - 1e-9)), m];
    const vs = sgn ? [...pos.slice(1).reverse().map((v) => -v), ...pos] : pos;
    out.ticks = vs.map((v) => tick(v, dec.includes(Math.abs(v)) ? (v < 0 ? "-" : "") + decade(Math.abs(v)) : fmt(v)));
  } else {
    // average ranks of the distinct values of the data (of |v| when signed), then interpolation
    const xs = (sgn ? data.map(Math.abs) : data.slice()).sort((a, b) => a - b), n = xs.length;
    /** @type {number[]} */
    const u = [], r = [];
    for (let i = 0; i < n;) {
      let j = i;
      while (j + 1 < n && xs[j + 1] === xs[i]) j++;
      u.push(xs[i]); r.push((i + j) / 2);
      i = j + 1;
    }
    const den = Math.max(n - 1, 1);
    const q = (/** @type {number} */ v) => {
      if (!u.length || !(v > u[0])) return u.length && v === u[0] ? r[0] / den : 0;
      if (v >= u[u.length - 1]) return r[r.length - 1] / den;
      let a = 0, b = u.length - 1;  // u[a] < v <= u[b]
      while (b - a > 1) { const mid = (a + b) >> 1; if (u[mid] < v) a = mid; else b = mid; }
      return (r[a] + (r[b] - r[a]) * (v - u[a]) / (u[b] - u[a])) / den;
    };
    out.t = wrap(sgn ? (v) => Math.sign(v) * q(Math.abs(v)) : q);
    // the value at a quantile p (inverse of q on the data's positions)
    const at = (/** @type {number} */ p) => { if (!n) return 0; const x = p * (n - 1), i = Math.min(Math.floor(x), n - 1), f = x - i;
      return i + 1 < n ? xs[i] + f * (xs[i + 1] - xs[i]) : xs[i]; };
    const ps = sgn ? [[0, -at(1)], [0.25, -at(0.5)], [0.5, 0], [0.75, at(0.5)], [1, at(1)]]
      : [0, 0.25, 0.5, 0.75, 1].map((p) => [p, at(p)]);
    out.ticks = ps.map(([, v]) => tick(v));  // at the quantiles' positions (ties: their average rank)
  }
  return out;
}
/**
 * 10^k written as 1e-5, 0.01, 1, 100, 1e4.
 * @param {number} d
 * @returns {string}
 */
function decade(d) {
  const k = Math.round(Math.log10(d));
  return k >= -2 && k <= 3 ? String(Number(Math.pow(10, k).toPrecision(1))) : "1e" + k;
}
/**
 * A colour of a scale: [r, g, b] (floats 0..255).
 * @param {Scale} sc
 * @param {number} v
 * @returns {RGB}
 */
function colourOf(sc, v) {
  return lerp(sc.stops, sc.t(v));
}

/**
 * A scale in words, for captions.
 * @param {Scale} sc
 * @returns {string}
 */
function describeScale(sc) {
  const what = sc.kind === "log" ? `log scale (symlog; linear below 1e-3 × max = ${fmt(sc.band)}), decades marked`
    : sc.kind === "rank" ? (sc.signed ? `rank scale: colour = sign × the quantile of |value| among the ${sc.n} values`
      : `rank scale: colour = the value's quantile among the ${sc.n} values`) + ", the bar labelled with the values at its quantiles"
      : "linear scale";
  return what + (sc.signed ? `, ${fmt(sc.lo)} … ${fmt(sc.hi)}, blue < 0 < red (white at 0)` : `, ${fmt(sc.lo)} … ${fmt(sc.hi)} (inferno)`);
}
