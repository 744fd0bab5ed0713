// The admin page: asks for the admin key when the gateway wants one, then polls the admin
// API: the fleet, traffic and requests in flight every 2 seconds, the rest every 5.
"use strict";

const FAST = 2000;
const SLOW = 5000;
let slowDue = 0;
let polling = null;

async function refresh() {
  const now = Date.now();
  const work = [loadFleet(), loadTraffic(), loadRequests()];
  if (now >= slowDue) {
    slowDue = now + SLOW;
    work.push(loadIncidents(), loadQuarantine(), loadGuard(), loadKeys());
  }
  const results = await Promise.allSettled(work);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) showStatus(failed.reason.message, true);
  else showStatus("updated " + new Date().toLocaleTimeString(), false);
}

function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  document.getElementById("forget").hidden = !api.key;
  slowDue = 0;
  refresh();
  if (polling === null) polling = setInterval(refresh, FAST);
}

function askForKey(problem) {
  if (polling !== null) { clearInterval(polling); polling = null; }
  document.getElementById("main").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = problem || "";
  document.getElementById("key").focus();
  showStatus("admin key needed", true);
}

api.onUnauthorized = () => askForKey(api.key ? "that key was refused" : "");

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  api.useKey(document.getElementById("key").value.trim());
  document.getElementById("key").value = "";
  start();
});

document.getElementById("forget").addEventListener("click", () => {
  api.useKey(null);
  askForKey("");
});

start();
