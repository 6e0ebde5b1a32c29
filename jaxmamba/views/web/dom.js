/* Building the page: elements, labelled controls, menus. */

/**
 * An element with attributes ("class", "text" for its text, any other as an attribute) and
 * children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Object<string, string|number>} [attrs]
 * @param {...(Node|string)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = String(v); else if (k === "text") e.textContent = String(v); else e.setAttribute(k, String(v));
  }
  for (const c of children) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  return e;
}

/**
 * A labelled control, the label's id `<id>-ctl` (shown or hidden with its control).
 * @param {string} label
 * @param {HTMLElement} input
 * @param {string} id
 * @returns {HTMLLabelElement}
 */
function control(label, input, id) {
  return el("label", { id: id + "-ctl" }, label + " ", input);
}

/**
 * @param {string} id
 * @returns {HTMLSelectElement}
 */
function dropdown(id) {
  return el("select", { id });
}

/**
 * Fill a menu with [value, label] items and choose `value` (the first item when it is not one).
 * @param {HTMLSelectElement} sel
 * @param {(string|number)[][]} items
 * @param {string|number|null} value
 * @returns {string}  the value chosen
 */
function fill(sel, items, value) {
  sel.innerHTML = "";
  for (const [v, label] of items) sel.appendChild(el("option", { value: String(v), text: label }));
  const ok = items.some(([v]) => String(v) === String(value));
  sel.value = ok ? String(value) : (items.length ? String(items[0][0]) : "");
  return sel.value;
}
