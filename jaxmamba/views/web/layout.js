/* The explorer's elements: the controls, the panels and their canvases, in the page's order.
 * Element ids are the page's interface (the tests and the controls' labels read them). */

/** The heat maps' and the scatterplot's side, the scatterplot's margin, a colour bar's width. */
const SIZE = 500, PAD = 14, BAR_W = 400;

/**
 * Build the explorer's elements in `root` (emptied first).
 * @param {HTMLElement} root
 */
function layout(root) {
  root.classList.add("jm-root");
  root.innerHTML = "";
  const title = el("h1", { text: "jaxmamba attention explorer" });
  const sub = el("div", { class: "jm-sub" });
  const companions = el("div", { class: "jm-companions hidden", id: "companions" });
  const ctl = {
    mode: dropdown("mode"), order: dropdown("order"), stage: dropdown("stage"), block: dropdown("block"),
    subject: dropdown("subject"), route: dropdown("route"), method: dropdown("method"), points: dropdown("points"),
    colorby: dropdown("colorby"), direction: dropdown("direction"), image: dropdown("image"),
    studyB: dropdown("studyB"), orderB: dropdown("orderB"), blockB: dropdown("blockB"), subjectB: dropdown("subjectB"),
    showpath: el("input", { id: "showpath", type: "checkbox" }), noself: el("input", { id: "noself", type: "checkbox" }),
    scale: dropdown("scale"), underlay: dropdown("underlay"), opacity: dropdown("opacity"), comparescale: dropdown("comparescale"),
    "matrix-coords": dropdown("matrix-coords"),
  };
  const reset = el("button", { id: "reset", type: "button", text: "centre patch" });
  const row1 = el("div", { class: "jm-controls" },
    control("view", ctl.mode, "mode"), control("order", ctl.order, "order"), control("stage", ctl.stage, "stage"),
    control("block", ctl.block, "block"), control("map of", ctl.subject, "subject"), control("route", ctl.route, "route"),
    control("embedding", ctl.method, "method"), control("points", ctl.points, "points"), control("colour by", ctl.colorby, "colorby"));
  const row2 = el("div", { class: "jm-controls" },
    control("heat map", ctl.direction, "direction"), control("colour scale", ctl.scale, "scale"),
    control("image under the map", ctl.underlay, "underlay"), control("image", ctl.image, "image"),
    control("map opacity", ctl.opacity, "opacity"),
    el("label", { id: "path-ctl" }, ctl.showpath, " scan path"), el("label", { id: "noself-ctl" }, ctl.noself, " scale without the selected patches"), reset);
  const rowB = el("div", { class: "jm-controls", id: "compare-ctl" }, el("b", { text: "right panel:" }),
    control("study", ctl.studyB, "studyB"), control("order", ctl.orderB, "orderB"), control("block", ctl.blockB, "blockB"), control("map of", ctl.subjectB, "subjectB"),
    control("colour scales", ctl.comparescale, "comparescale"));
  const scatterCv = el("canvas", { id: "scatter", class: "jm-scatter", width: SIZE, height: SIZE });
  const heatCv = el("canvas", { id: "heat", class: "jm-heat", width: SIZE, height: SIZE, "data-selected": "" });
  const heatCvB = el("canvas", { id: "heatB", class: "jm-heat", width: SIZE, height: SIZE, "data-selected": "" });
  const bar = colourBar("colorbar", "ticks", "colorbar-note");
  const barB = colourBar("colorbarB", "ticksB", "colorbar-note-b");
  const loadingA = el("div", { class: "jm-loading", id: "loading" });
  const loadingB = el("div", { class: "jm-loading", id: "loading-b" });
  const scatterTitle = el("h2", { id: "scatter-title", text: "Scatterplot" });
  const scatterLegend = el("div", { class: "jm-legend", id: "scatter-legend" });
  const heatTitle = el("h2", { id: "heat-title", text: "Patch view" });
  const heatTitleB = el("h2", { id: "heat-title-b", text: "" });
  const caption = el("div", { class: "jm-caption", id: "caption" });
  const captionB = el("div", { class: "jm-caption", id: "caption-b" });
  const findings = el("div", { class: "jm-findings", id: "findings" });
  const status = el("div", { class: "jm-status", id: "status" });
  const info = el("div", { class: "jm-info", id: "info" });
  const help = el("div", { class: "jm-help", id: "help" });
  const scatterPanel = el("section", { class: "jm-panel", id: "scatter-panel" }, scatterTitle, scatterCv, scatterLegend);
  const barBoxB = el("div", { class: "jm-bar", id: "colorbar-b" }, el("div", {}, barB.cv, barB.ticks, barB.note));
  const heatPanel = el("section", { class: "jm-panel", id: "heat-panel" }, heatTitle, el("div", { class: "jm-stack" }, heatCv, loadingA),
    el("div", { class: "jm-bar" }, el("div", {}, bar.cv, bar.ticks, bar.note)), caption);
  const heatPanelB = el("section", { class: "jm-panel", id: "heat-panel-b" }, heatTitleB, el("div", { class: "jm-stack" }, heatCvB, loadingB),
    barBoxB, captionB);
  // the matrix view and the blocks overview (their own panels, drawn by drawMatrix / drawOverview)
  const matrixCv = el("canvas", { id: "matrix", class: "jm-matrix", width: 500, height: 500 });
  const matrixBar = colourBar("matrix-colorbar", "matrix-ticks", "matrix-colorbar-note");
  const matrixTitle = el("h2", { id: "matrix-title", text: "Attention matrix" });
  const matrixCaption = el("div", { class: "jm-caption", id: "matrix-caption" });
  const matrixInfo = el("div", { class: "jm-caption", id: "matrix-info" });
  const matrixPanel = el("section", { class: "jm-panel hidden", id: "matrix-panel" }, matrixTitle,
    el("div", { class: "jm-controls" }, control("axes: the scan order of", ctl["matrix-coords"], "matrix-coords")), matrixCv,
    el("div", { class: "jm-bar" }, el("div", {}, matrixBar.cv, matrixBar.ticks, matrixBar.note)), matrixCaption, matrixInfo);
  const overviewTitle = el("h2", { id: "overview-title", text: "The selection in every block" });
  const overviewBox = el("div", { class: "jm-overview", id: "overview" });
  const overviewCaption = el("div", { class: "jm-caption jm-wide", id: "overview-caption" });
  const overviewPanel = el("section", { class: "jm-panel hidden", id: "overview-panel" }, overviewTitle, overviewCaption, overviewBox);
  root.append(title, sub, companions, row1, row2, rowB, findings, status,
    el("div", { class: "jm-main" }, scatterPanel, matrixPanel, heatPanel, heatPanelB, overviewPanel), info, help);
  return {
    title, sub, companions, ctl, reset, findings, status, info, help,
    scatterPanel, scatterCv, scatterTitle, scatterLegend,
    heatPanel, heatCv, heatTitle, caption, bar, loadingA,
    heatPanelB, heatCvB, heatTitleB, captionB, barB, barBoxB, loadingB,
    matrixPanel, matrixCv, matrixBar, matrixTitle, matrixCaption, matrixInfo,
    overviewPanel, overviewTitle, overviewBox, overviewCaption,
  };
}

/** @typedef {{cv: HTMLCanvasElement, ticks: HTMLDivElement, note: HTMLDivElement}} ColourBar */

/**
 * A colour bar's canvas, its ticks and its note (drawn by drawColorbar).
 * @param {string} id
 * @param {string} ticksId
 * @param {string} noteId
 * @returns {ColourBar}
 */
function colourBar(id, ticksId, noteId) {
  return { cv: el("canvas", { id, width: BAR_W, height: 12 }), ticks: el("div", { class: "jm-ticks", id: ticksId }),
    note: el("div", { class: "jm-barnote", id: noteId }) };
}
