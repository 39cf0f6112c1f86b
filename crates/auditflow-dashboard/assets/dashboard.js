// AuditFlow dashboard: live panels without a page reload.
//
// Every element with `data-refresh="<url>"` re-fetches that URL every
// `data-every` milliseconds and replaces its content with the answer, an
// HTML fragment the server rendered (and escaped). Scripts inside replaced
// content never run (innerHTML does not execute them, and the page's
// Content-Security-Policy allows this file only). When a refresh fails the
// element keeps its content and is marked offline until the next success.
"use strict";

(function () {
  function schedule(element) {
    var every = Number(element.getAttribute("data-every")) || 2000;
    var url = element.getAttribute("data-refresh");
    var inFlight = false;
    function tick() {
      // A hidden tab does not poll; it catches up when shown again.
      if (inFlight || document.hidden) {
        return;
      }
      inFlight = true;
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (response.status === 401) {
            window.location.reload();
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html === null) {
            element.classList.add("offline");
            return;
          }
          element.innerHTML = html;
          element.classList.remove("offline");
          element.setAttribute("data-refreshed-at", new Date().toISOString());
        })
        .catch(function () {
          element.classList.add("offline");
        })
        .then(function () {
          inFlight = false;
        });
    }
    window.setInterval(tick, every);
    document.addEventListener("visibilitychange", tick);
  }

  function start() {
    var elements = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < elements.length; i++) {
      schedule(elements[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
