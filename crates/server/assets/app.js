// breakglass web UI: countdowns and running clocks, and the row limit of a live session page.
// Every page works without this file; it keeps the numbers moving between server updates and
// a live page from growing without end.
(function () {
  "use strict";
  function fmt(ms) {
    if (ms < 0) ms = 0;
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return (h > 0 ? h + ":" + pad(m) : m) + ":" + pad(s);
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline-ms]").forEach(function (el) {
      var left = Number(el.getAttribute("data-deadline-ms")) - now;
      el.textContent = left > 0 ? fmt(left) + " left" : "expired; ending sessions";
      el.classList.toggle("urgent", left < 60000);
    });
    document.querySelectorAll("[data-since-ms]").forEach(function (el) {
      var label = el.getAttribute("data-label") || "running";
      el.textContent = label + ": " + fmt(now - Number(el.getAttribute("data-since-ms")));
    });
  }
  // A live session page keeps its newest `data-keep` rows: it follows the session for as
  // long as it runs, and the oldest rows go (they stay on the session's pages).
  function trim(rows) {
    var keep = Number(rows.getAttribute("data-keep"));
    var extra = rows.rows.length - keep;
    if (!(keep > 0) || extra <= 0) return;
    for (var i = 0; i < extra; i++) rows.deleteRow(0);
    var dropped = Number(rows.getAttribute("data-dropped") || 0) + extra;
    rows.setAttribute("data-dropped", String(dropped));
    var note = document.getElementById("trimmed");
    if (note) {
      note.hidden = false;
      note.querySelector(".count").textContent = String(dropped);
    }
  }
  function follow() {
    var rows = document.getElementById("statement-rows");
    if (!rows || !rows.hasAttribute("data-keep")) return;
    trim(rows);
    new MutationObserver(function () { trim(rows); }).observe(rows, { childList: true });
  }
  setInterval(tick, 500);
  document.addEventListener("DOMContentLoaded", follow);
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSwap", tick);
})();
