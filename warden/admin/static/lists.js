// The lists: requests in flight (with abort), incidents and their suspects, the quarantine
// (with lift), the guard's recent decisions, keys and tenants with their usage and limits.
"use strict";

async function loadRequests() {
  const answer = await api.get("/admin/requests");
  const rows = answer.requests.map((r) => el("tr", {"data-request": r.id},
    el("td", {class: "mono"}, r.id),
    el("td", {}, r.tenant || r.principal || "–"),
    el("td", {}, r.model || "–"),
    el("td", {}, r.backend || "–"),
    el("td", {}, seconds(r.age)),
    el("td", {}, r.events === null ? "–" : r.events),
    el("td", {}, actionButton("abort", async () => {
      await api.post("/admin/requests/" + encodeURIComponent(r.id) + "/abort");
      await loadRequests();
    }, {"data-abort": r.id}))));
  fillRows(document.getElementById("requests"), rows, "none");
}

async function loadIncidents() {
  const answer = await api.get("/admin/incidents");
  const box = document.getElementById("incidents");
  if (!answer.incidents.length) {
    box.replaceChildren(el("p", {class: "muted"}, "none"));
    return;
  }
  box.replaceChildren(...answer.incidents.map(incidentView));
}

const SHOWN_SUSPECTS = 8;  // the rest: in the export

function incidentView(incident) {
  const hidden = incident.suspects.length - SHOWN_SUSPECTS;
  const suspects = incident.suspects.slice(0, SHOWN_SUSPECTS).map((s, rank) => el("tr",
    {"data-suspect": s.id},
    el("td", {}, rank + 1),
    el("td", {class: "mono"}, s.id),
    el("td", {}, s.score),
    el("td", {}, s.model || "–"),
    el("td", {}, s.tenant || "–"),
    el("td", {class: "wrap"}, suspectWhy(s))));
  const exported = incident.open ? el("span", {class: "muted"}, "gathering signals…")
    : el("a", {href: "/admin/incidents/" + encodeURIComponent(incident.id),
               download: "incident-" + incident.id + ".json"}, "export JSON");
  return el("details", {class: "incident", "data-incident": incident.id, open: true},
    el("summary", {},
      el("strong", {}, incident.backend), " died ", incident.at, " — ",
      incident.detected_by, incident.engine_crash ? " (engine crash)" : "", " · ",
      incident.suspects.length + " suspects · ", exported),
    el("table", {class: "suspects"},
      el("thead", {}, el("tr", {}, ...["#", "request", "score", "model", "tenant", "why"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, ...suspects)),
    el("p", {class: "muted"}, (hidden > 0 ? hidden + " more suspects in the export. " : "")
      + "With the records of each suspect: warden incidents export " + incident.id));
}

function suspectWhy(suspect) {
  const why = [...suspect.unusual];
  if (suspect.in_flight) why.push("in flight at the death");
  if (suspect.age <= 1) why.push("sent within the last second");
  if (suspect.outcome) why.push("ended: " + suspect.outcome);
  return why.join("; ") || "sent shortly before";
}

async function loadQuarantine() {
  const answer = await api.get("/admin/quarantine");
  document.getElementById("quarantine-state").textContent = !answer.enabled ? "off"
    : answer.store && !answer.store.up ? "store down" : answer.waiting
      ? answer.waiting + " waiting" : "";
  const rows = answer.quarantine.map((entry) => el("tr", {"data-fingerprint": entry.fingerprint},
    el("td", {class: "mono", title: entry.kind}, entry.fingerprint),
    el("td", {}, entry.state),
    el("td", {}, entry.strikes),
    el("td", {}, entry.model || "–"),
    el("td", {class: "wrap"}, entry.reasons.join("; ") || "in flight at a death"),
    el("td", {}, actionButton("lift", async () => {
      await api.post("/admin/quarantine/lift", {fingerprints: [entry.fingerprint]});
      await loadQuarantine();
    }, {"data-lift": entry.fingerprint}))));
  fillRows(document.getElementById("quarantine"), rows,
           answer.enabled ? "nothing held" : "the quarantine is off");
}

async function loadGuard() {
  const answer = await api.get("/admin/guard/recent");
  const rows = answer.decisions.map((d) => el("tr", {},
    el("td", {}, new Date(d.at * 1000).toLocaleTimeString()),
    el("td", {class: "mono"}, d.id),
    el("td", {}, d.outcome + (d.status ? " " + d.status : "")),
    el("td", {}, d.model || "–"),
    el("td", {}, d.tenant || "–"),
    el("td", {class: "wrap"}, d.notes.join("; "))));
  fillRows(document.getElementById("guard"), rows, "none yet");
}

async function loadKeys() {
  const [keys, limits] = await Promise.all([api.get("/admin/keys"), api.get("/admin/limits")]);
  const state = limits.state;
  document.getElementById("limits-state").textContent = !limits.enabled ? "limits: off"
    : "limits: " + Object.entries(state).filter(([k]) => k !== "since")
      .map(([k, v]) => k + " " + flat(v)).join(", ");
  const rows = keys.keys.map((key) => el("tr", {"data-key": key.id},
    el("td", {class: "mono", title: key.source}, key.id),
    el("td", {}, key.tenant || "–"),
    el("td", {}, key.state),
    el("td", {}, key.models ? key.models.join(", ") : "all"),
    el("td", {class: "wrap"}, usage(key))));
  // The tenants (their own limits and budget; both a key's and its tenant's apply).
  for (const [name, tenant] of Object.entries(keys.tenants || {}).sort()) {
    rows.push(el("tr", {"data-tenant": name}, el("td", {class: "muted"}, "(tenant)"),
      el("td", {}, name), el("td", {}, "–"), el("td", {}, "–"),
      el("td", {class: "wrap"}, usage(tenant))));
  }
  fillRows(document.getElementById("keys"), rows, "no keys (auth off, or none made)");
}

// Whatever the key's entry says of its usage and limits, as `name used / limit` where both
// are given, else `name value`.
function usage(key) {
  const limits = key.limits || {};
  const used = key.usage || {};
  const names = new Set([...Object.keys(limits), ...Object.keys(used)]);
  names.delete("budget");  // (shown from the entry's `budget`: what is spent of it)
  const parts = [...names].sort().map((name) => name in used && name in limits
    ? name + " " + flat(used[name]) + " / " + flat(limits[name])
    : name + " " + flat(name in used ? used[name] : limits[name]));
  const budget = key.budget;
  if (budget) {
    parts.push("budget " + flat(budget.spent) + " / " + flat(budget.limit) + " " + budget.kind
      + " a " + budget.per + " (resets " + flat(budget.resets_at) + ")");
  }
  return parts.length ? parts.join(", ") : "no limits of its own";
}

function flat(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
