// breakglass web UI: countdowns and running clocks. Every page works without this file;
// it only keeps the numbers moving between server updates.
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
  setInterval(tick, 500);
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSwap", tick);
})();
