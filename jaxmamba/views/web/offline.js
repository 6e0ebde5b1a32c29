/* The offline file's arithmetic, as the server's: decoding the embedded matrices, a selection's
 * mean row, a selection on another grid, a pooled matrix. */

/** @typedef {{shape: number[], dtype: string, data: string, lo?: string, step?: string}} Encoded */

/**
 * @param {string} s  base64
 * @returns {Uint8Array}
 */
function decodeB64(s) {
  const bin = atob(s), out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
/** @type {Float32Array|null} */
let HALF = null;
/** @returns {Float32Array} every float16 bit pattern's value */
function halfTable() {
  if (HALF) return HALF;
  HALF = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    HALF[h] = e === 0 ? s * m * Math.pow(2, -24) : e === 31 ? (m ? NaN : s * Infinity)
      : s * (1 + m / 1024) * Math.pow(2, e - 15);
  }
  return HALF;
}
/**
 * Decode an encoded matrix of the offline file (uint8 per row, float16 or float32).
 * @param {Encoded} enc
 * @returns {Float32Array}  (n, f) flat
 */
function decodeMatrix(enc) {
  const n = enc.shape[0], f = enc.shape[1], raw = decodeB64(enc.data);
  if (enc.dtype === "float32") return new Float32Array(raw.buffer);
  const out = new Float32Array(n * f);
  if (enc.dtype === "float16") {
    const hv = new Uint16Array(raw.buffer), T = halfTable();
    for (let i = 0; i < n * f; i++) out[i] = T[hv[i]];
    return out;
  }
  const lo = new Float32Array(decodeB64(enc.lo).buffer), st = new Float32Array(decodeB64(enc.step).buffer);
  for (let r = 0; r < n; r++) {
    const a = lo[r], b = st[r], o = r * f;
    for (let c = 0; c < f; c++) out[o + c] = a + raw[o + c] * b;
  }
  return out;
}
/**
 * The mean row (direction "query") or column of `patches` in an (n, n) map.
 * @param {Float32Array} M  (n, n) flat
 * @param {number} n
 * @param {number[]} patches
 * @param {string} direction
 * @returns {Float32Array}  (n,)
 */
function meanRows(M, n, patches, direction) {
  const v = new Float32Array(n);
  for (const p of patches) {
    if (direction === "query") { const o = p * n; for (let q = 0; q < n; q++) v[q] += M[o + q]; }
    else for (let q = 0; q < n; q++) v[q] += M[q * n + p];
  }
  for (let q = 0; q < n; q++) v[q] /= patches.length;
  return v;
}
/** The tokens of grid `to` covering the image area of tokens `ps` of grid `from` (sorted; the
 *  rule of jaxmamba.study.map_selection): a class token (position fromCls, a Vim layer's) maps
 *  to the other block's class token (toCls), or to nothing in a block without one.
 * @param {number[]} ps
 * @param {number[]} from  (h, w)
 * @param {number[]} to    (h, w)
 * @param {number|null} [fromCls]
 * @param {number|null} [toCls]
 * @returns {number[]}
 */
function mapCells(ps, from, to, fromCls = null, toCls = null) {
  /** @type {Set<number>} */
  const out = new Set();
  let rest = ps;
  if (fromCls !== null && fromCls !== undefined && ps.includes(fromCls)) {
    rest = ps.filter((p) => p !== fromCls);
    if (toCls !== null && toCls !== undefined) out.add(toCls);
  }
  if (from[0] === to[0] && from[1] === to[1]) return [...new Set([...out, ...rest])].sort((a, b) => a - b);
  for (const p of rest) {
    const r = Math.floor(p / from[1]), c = p % from[1];
    const r0 = Math.floor(r * to[0] / from[0]), r1 = Math.max(r0, Math.ceil((r + 1) * to[0] / from[0]) - 1);
    const c0 = Math.floor(c * to[1] / from[1]), c1 = Math.max(c0, Math.ceil((c + 1) * to[1] / from[1]) - 1);
    for (let rr = r0; rr <= r1; rr++) for (let cc = c0; cc <= c1; cc++) out.add(rr * to[1] + cc);
  }
  return [...out].sort((a, b) => a - b);
}
const MATRIX_SIZES = [16, 1024];  // a pooled matrix's side in pixels, as the server's
/** An (L, L) map `A` (flat, row-major) in the scan order `perm` (scan position -> patch),
 *  M[t, s] = A[perm[t], perm[s]], pooled by the mean over f x f tiles (the last tile of an axis
 *  shorter when f does not divide L): the server's Study.matrix, in float64, then float32.
 * @param {Float32Array} A  (L, L) flat
 * @param {number} L
 * @param {ArrayLike<number>} perm
 * @param {number} f
 * @returns {Float32Array}  (n, n) flat, n = ceil(L / f)
 */
function poolMatrix(A, L, perm, f) {
  const n = Math.ceil(L / f), total = new Float64Array(n * n), tile = new Int32Array(L);
  for (let s = 0; s < L; s++) tile[s] = Math.floor(s / f);
  for (let t = 0; t < L; t++) {
    const row = perm[t] * L, o = tile[t] * n;
    for (let s = 0; s < L; s++) total[o + tile[s]] += A[row + perm[s]];
  }
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++)
    out[i * n + j] = total[i * n + j] / (Math.min(f, L - i * f) * Math.min(f, L - j * f));
  return out;
}
/**
 * The checked arguments of a matrix request: [coords, size, f, n] (errors as the server's).
 * @param {number} L
 * @param {number} K  the number of routes
 * @param {string} route
 * @param {number|string|undefined|null} coords
 * @param {number|string|undefined|null} size
 * @returns {number[]}
 */
function matrixArgs(L, K, route, coords, size) {
  const isInt = (/** @type {unknown} */ v) => Number.isInteger(v) || (typeof v === "string" && /^[0-9]{1,9}$/.test(v));
  if (size === undefined || size === null) size = 512;
  if (!isInt(size) || +size < MATRIX_SIZES[0] || +size > MATRIX_SIZES[1])
    throw new Error(`size must be an integer in ${MATRIX_SIZES[0]}..${MATRIX_SIZES[1]} (pixels), got ${size}`);
  if (coords === undefined || coords === null) coords = route === "sum" ? 0 : route;
  if (!isInt(coords) || +coords >= K) throw new Error(`coords must be a route 0..${K - 1} (its scan order gives the axes), got ${coords}`);
  const f = Math.ceil(L / +size);
  return [+coords, +size, f, Math.ceil(L / f)];
}

