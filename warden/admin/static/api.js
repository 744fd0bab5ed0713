// The admin page's calls to the admin API, and the one way it puts text on the page.
// Every string shown comes from clients or the config (model, tenant, key names): it is
// only ever set as text (textContent), never parsed as HTML, so none can become markup.
"use strict";

const KEY_SLOT = "warden-admin-key";

const api = {
  key: sessionStorage.getItem(KEY_SLOT),
  onUnauthorized: null,

  async call(method, path, body) {
    const headers = {};
    if (api.key) headers["Authorization"] = "Bearer " + api.key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let answer = null;
    try { answer = await response.json(); } catch (e) { answer = null; }
    if (response.status === 401 && api.onUnauthorized) api.onUnauthorized();
    if (!response.ok) {
      const message = answer && answer.error ? answer.error.message : response.statusText;
      throw new Error(response.status + ": " + message);
    }
    return answer;
  },
  get(path) { return api.call("GET", path); },
  post(path, body) { return api.call("POST", path, body === undefined ? {} : body); },
  useKey(key) {
    api.key = key || null;
    if (key) sessionStorage.setItem(KEY_SLOT, key); else sessionStorage.removeItem(KEY_SLOT);
  },
};

// el("td", {class: "x", title: "y"}, "text", child, ...): an element; strings become text.
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// The rows of a table's body, replaced (an empty list: one row saying `empty`).
function fillRows(table, rows, empty) {
  const body = table.tBodies[0];
  const columns = table.tHead.rows[0].cells.length;
  body.replaceChildren(...(rows.length ? rows
    : [el("tr", {class: "empty"}, el("td", {colspan: columns}, empty))]));
}

function number(value, digits) {
  if (value === null || value === undefined) return "–";
  return typeof value === "number" ? value.toFixed(digits === undefined ? 0 : digits)
    : String(value);
}

function percent(value) {
  return value === null || value === undefined ? "–" : (100 * value).toFixed(0) + "%";
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 10 ? value.toFixed(1) + "s" : value.toFixed(0) + "s";
}

// A button that runs `action` once per click, disabled meanwhile; its failure is shown.
function actionButton(label, action, attributes) {
  const button = el("button", Object.assign({class: "small"}, attributes || {}), label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await action(); } catch (e) { showStatus(e.message, true); }
    finally { button.disabled = false; }
  });
  return button;
}

function showStatus(text, bad) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = bad ? "bad" : "muted";
}
