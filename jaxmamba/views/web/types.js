/* The explorer's types (JSDoc only, no code): the study's metadata as the server sends it, a
 * data source, the app's state and what it has loaded. Checked by `tsc --noEmit` (tsconfig.json
 * at the repository root); not part of the served script. */

/** A block: its grid (h, w) and, for a Vim layer, its class token's position `cls` = h·w
 *  (class-last: the row-major patches, then the class token; L = h·w + 1), else null.
 * @typedef {{name: string, stage: number, index: number|null, grid: number[], cls?: number|null}} BlockMeta */
/** @typedef {{name: string, routes: number|null, model: string|null, model_digest: string|null,
 *   blocks: string[]}} OrderMeta */
/** @typedef {{stage: number, grid: number[], blocks: string[]}} StageMeta */
/** @typedef {{subject: number|string, name: string, image: number}} SingleImage */
/** The findings of an order; `depth` (a Vim order's): the means over the earlier and the later
 *  half of its layers.
 * @typedef {{stages: Object<string, Object<string, number|null>>,
 *   blocks: Object<string, Object<string, number|null>>,
 *   depth?: {early: Object<string, number|null>, late: Object<string, number|null>}}} OrderFindings */

/**
 * The study's metadata (`/api/meta`, the widget's `meta`, or built from the offline data).
 * @typedef {Object} Meta
 * @property {string} [title]
 * @property {number|null} count        images averaged into the mean maps
 * @property {boolean} signed           maps may be negative (a diverging colour scale)
 * @property {string[]} methods         the embeddings of the patches ("pca", "tsne", "umap")
 * @property {boolean} route_maps       the study kept the per-route maps
 * @property {OrderMeta[]} orders
 * @property {BlockMeta[]} blocks
 * @property {{name: string}[]} images  the images under a mean map
 * @property {SingleImage[]} single_images
 * @property {StageMeta[]} stages
 * @property {Object<string, OrderFindings>} [findings]
 * @property {Object<string, unknown>} [joint]
 * @property {number} [pool_grid]
 * @property {boolean} [synthetic]
 * @property {CompanionMeta[]} [companions]  studies of other models over the same images
 * @property {{name: string, error: string}[]} [companion_errors]  companions that failed to open
 */

/** A companion study's metadata (its own Meta), with its position `index` (the `study` of its
 *  requests, >= 1), its sub-folder and whether it shows the same images.
 * @typedef {Meta & {index: number, folder: string, same_images: boolean}} CompanionMeta */

/** An array with what it is: a pooled matrix or the overview of a selection.
 * @typedef {{content: Object<string, any>, values: Float32Array}} Described */

/**
 * Where the explorer's data comes from: the server, the notebook widget or the offline file.
 * The app asks only for what it draws.
 * @typedef {Object} Source
 * @property {string} kind   "http", "embedded" or "widget"
 * @property {() => Promise<Meta>} meta
 * @property {(order: string, block: string, method: string, subject?: string) => Promise<Float32Array>} coords
 *   the patches' 2-d embedding, (L, 2) flat
 * @property {(order: string, block: string) => Promise<Int32Array|null>} routes
 *   the scan routes, (K, L) flat: route k's t-th patch
 * @property {(kind: string, order: string, stage: number, method: string) => Promise<Float32Array>} points
 *   the blocks mode's points, (n, 2) flat
 * @property {(order: string, block: string, route: string, direction: string, patches: number[],
 *   subject?: string) => Promise<Float32Array>} heat   the selection's mean row (or column), (L,)
 * @property {(order: string, block: string, route: string, coords?: number|string, size?: number)
 *   => Promise<Described>} matrix   the block's matrix pooled to screen size
 * @property {(order: string, block: string, route: string, direction: string, patches: number[],
 *   subject?: string) => Promise<Described>} overview   the selection's mean row in every block
 * @property {(i: number) => string|Promise<string>} imageUrl
 * @property {(order: string, block: string, route: string, p: number) => Float32Array} [rowSync]
 *   one row of a map, at once (the offline file only)
 * @property {(i: number) => Source} [study]  the source of companion study i (meta's companions)
 */

/** The selection as last made by hand, with its grid and class token (null: none): other grids
 *  show its image area (and their class token for it).
 * @typedef {{grid: number[], sel: number[], cls: number|null}} Anchor */

/**
 * The app's state: everything the controls and the pointer set; render() draws from it.
 * @typedef {Object} State
 * @property {string} mode          "patches", "blocks", "compare", "matrix" or "overview"
 * @property {string} order
 * @property {string} block
 * @property {string} subject       "mean" or a single image's subject number
 * @property {string} route         "sum" or a route number
 * @property {string} method        the embedding of the scatterplot
 * @property {string} points        the blocks mode's points: "interblock" or "joint"
 * @property {string} colorBy       "row", "col" or "scan"
 * @property {string} direction     "query" (rows) or "source" (columns)
 * @property {number} image         the image under a mean map, -1 for none
 * @property {boolean} showPath
 * @property {boolean} noSelf       the colour scale leaves the selected patches out
 * @property {number[]} selection   the selected tokens of `block` (patches; a Vim layer's class token is h·w)
 * @property {number} hover         the patch under the pointer, -1 for none
 * @property {string} scale         "log", "linear" or "rank"
 * @property {string} underlay      "grey", "colour" or "none"
 * @property {number} opacity
 * @property {string} compareScale  "auto", "shared" or "panel"
 * @property {{study: number, order: string, block: string, subject: string}} B   the right panel
 *   (side by side): its study (0: this one, i: companion i), order, block and map
 * @property {number|null} picked   the blocks mode's point opened in the patch view
 * @property {Anchor|null} anchor
 * @property {string} matrixCoords  the matrix's axes: "auto" (the route shown) or a route
 * @property {number} matrixHover   the matrix's pooled row under the pointer, -1 for none
 */

/**
 * A colour scale (scaleFor): t(v) in 0..1 along `stops`.
 * @typedef {Object} Scale
 * @property {string} kind
 * @property {boolean} signed
 * @property {number} lo
 * @property {number} hi
 * @property {number} dataLo
 * @property {number} dataHi
 * @property {number} m
 * @property {number|null} band
 * @property {number} n
 * @property {number[][]} stops
 * @property {(v: number) => number} t
 * @property {{v: number, pos: number, label: string}[]} ticks
 */

/**
 * What the app has loaded for the state it last loaded, and what it drew from it.
 * @typedef {Object} Loaded
 * @property {Float32Array|null} points    the scatterplot's points, (n, 2) flat
 * @property {Int32Array|null} routes      the block's scan routes
 * @property {Float32Array|null} heatA
 * @property {Float32Array|null} heatB
 * @property {Float32Array|null} screen    the points on the canvas, (n, 2) flat
 * @property {Scale|null} scale
 * @property {Scale|null} scaleB
 * @property {MatrixData|null} matrix
 * @property {Described|null} overview
 */

/**
 * The mounted explorer: its elements, state, data and what is in flight. Every module's
 * functions take it as their first argument.
 * @typedef {Object} App
 * @property {HTMLElement} root
 * @property {Source} source
 * @property {Meta} meta           set once the source answers (before the first render)
 * @property {State} state
 * @property {Ui} ui
 * @property {Loaded} data
 * @property {{busy: number, generation: number, lastError: string|null,
 *   loading: {gen: number, shown: boolean, a: string, b: string}|null}} run
 * @property {{down: number[]|null, lasso: number[][]|null,
 *   rect: {cv: HTMLCanvasElement, x0: number, y0: number, x1: number, y1: number}|null}} pointer
 * @property {Object<string, Map<string, Promise<any>>>} caches
 * @property {Map<number, HTMLImageElement>} images
 * @property {Map<string, HTMLCanvasElement>} backdrops
 * @property {Map<number, App>} views  the app as seen from each companion study (studyView)
 * @property {App} [home]  a study view's app (the one drawn: render(app.home))
 */

/** @typedef {ReturnType<typeof layout>} Ui */
