/* Colours and numbers for reading: the colour maps, interpolation along them, CSS colours. */

/** @typedef {number[]} RGB  [r, g, b], floats 0..255 */

/** @type {RGB[]} sequential, for the scatterplot's positions */
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
/** @type {RGB[]} sequential, for maps of non-negative values */
const INFERNO = [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
  [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]];
/** @type {RGB[]} diverging, centred at zero: blue (negative) - white (0) - red (positive)
 *  (ColorBrewer RdBu) */
const RDBU = [[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
  [247, 247, 247], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]];
/** @type {RGB[]} categorical, one colour per block */
const TAB10 = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];

/**
 * The colour at t (clipped to 0..1; NaN as 0) along evenly spaced stops.
 * @param {RGB[]} stops
 * @param {number} t
 * @returns {RGB}
 */
function lerp(stops, t) {
  if (!(t >= 0)) t = 0;
  if (t > 1) t = 1;
  const x = t * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  const a = stops[i], b = stops[i + 1];
  return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
}

/**
 * A CSS colour: rgb(...), or rgba(...) with opacity a.
 * @param {RGB} c
 * @param {number} [a]
 * @returns {string}
 */
function css(c, a) {
  return a === undefined ? `rgb(${c[0] | 0},${c[1] | 0},${c[2] | 0})`
    : `rgba(${c[0] | 0},${c[1] | 0},${c[2] | 0},${a.toFixed(3)})`;
}

/**
 * Numbers for reading: 0, 0.123, 12.3, 2.4e-5, 1.2e+4.
 * @param {number} v
 * @returns {string}
 */
function fmt(v) {
  if (!isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1).replace(/\.0e/, "e");
  return String(Number(v.toPrecision(3)));
}
