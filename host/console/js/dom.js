// dom.js: element helpers. Every element is built with createElement and every piece of
// data goes in through textContent or a checked attribute; no HTML strings anywhere.

const SVG_NS = 'http://www.w3.org/2000/svg';

/// Attributes that must never come from here: inline styles and event handlers break the
/// content security policy, and HTML properties would parse markup.
function checkAttribute(name) {
  const lower = name.toLowerCase();
  if (lower === 'style' || lower.startsWith('on') || lower === 'innerhtml' || lower === 'outerhtml' || lower === 'srcdoc') {
    throw new Error(`refusing attribute ${name}`);
  }
}

function applyProps(node, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') {
      node.textContent = String(value);
    } else if (key === 'class') {
      node.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (key === 'data') {
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined && v !== null) node.setAttribute(`data-${k}`, String(v));
      }
    } else if (key === 'on') {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === 'value' && (node.tagName === 'INPUT' || node.tagName === 'TEXTAREA')) {
      node.defaultValue = String(value); // the value attribute: form.reset() comes back to it
    } else if (key === 'value' && 'value' in node) {
      node.value = String(value);
    } else if (key === 'checked' && 'checked' in node) {
      node.checked = Boolean(value);
    } else {
      checkAttribute(key);
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/// el('tr', {class: 'x', data: {queue: 'a'}}, child, 'text', ...)
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  applyProps(node, props);
  return append(node, children);
}

/// The same for SVG elements.
export function svg(tag, props, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  applyProps(node, props);
  return append(node, children);
}

/// Replaces all children of node.
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/// Sets the text of node only when it changed (keeps selection and screen readers calm).
export function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

/// Sets or removes an attribute (never style or handlers).
export function setAttr(node, name, value) {
  checkAttribute(name);
  if (value === undefined || value === null || value === false) node.removeAttribute(name);
  else if (node.getAttribute(name) !== String(value)) node.setAttribute(name, String(value));
}

/// A link that opens server-provided URL in a new tab, only for http(s); otherwise null.
export function externalLink(url, text, props = {}) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return null;
  const link = el('a', { ...props, target: '_blank', rel: 'noopener noreferrer' }, text);
  link.setAttribute('href', parsed.href);
  return link;
}

/// A local link to a console route (the route is built by us, parts are encoded).
export function routeLink(parts, text, props = {}) {
  const href = '#/' + parts.map((p) => encodeURIComponent(String(p))).join('/');
  return el('a', { ...props, href }, text);
}

/// A definition list from [label, value, props] rows; rows with a null value are skipped.
export function definitions(rows, props = {}) {
  const list = el('dl', props);
  for (const [label, value, ddProps] of rows) {
    if (value === undefined) continue;
    list.append(el('dt', null, label), el('dd', ddProps || null, value));
  }
  return list;
}

/// A labelled input for small forms.
export function field(label, input, hint) {
  return el('label', { class: 'field' }, el('span', { class: 'field-label' }, label), input, hint ? el('span', { class: 'field-hint' }, hint) : null);
}

/// Keeps `parent`'s children in step with `items`, one child per key, reusing the children
/// made before so that what a user is typing in them survives an update. `make(key, item)`
/// returns {node, update(item)}; `cache` (a Map) holds them between calls. Returns how many
/// items there are.
export function keyedChildren(parent, cache, items, keyOf, make) {
  const seen = new Set();
  items.forEach((item, i) => {
    const key = keyOf(item);
    seen.add(key);
    let entry = cache.get(key);
    if (!entry) {
      entry = make(key, item);
      cache.set(key, entry);
    }
    entry.update(item);
    if (parent.children[i] !== entry.node) parent.insertBefore(entry.node, parent.children[i] || null);
  });
  for (const [key, entry] of cache) {
    if (!seen.has(key)) {
      entry.node.remove();
      cache.delete(key);
    }
  }
  return items.length;
}
