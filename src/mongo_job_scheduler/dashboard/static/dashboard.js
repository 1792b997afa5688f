// Live refresh: every element with data-refresh-url is re-rendered in place from that URL
// every data-refresh-seconds (on <body>) seconds, without reloading the page.
(function () {
  "use strict";
  var seconds = parseFloat(document.body.getAttribute("data-refresh-seconds") || "0");
  var status = document.getElementById("live-status");
  var targets = Array.prototype.slice.call(document.querySelectorAll("[data-refresh-url]"));
  if (!(seconds > 0) || targets.length === 0) {
    return;
  }
  var inFlight = false;
  var last = new Map();

  function setStatus(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function refresh(element) {
    var url = element.getAttribute("data-refresh-url");
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Requested-With": "dashboard-refresh" }
    }).then(function (response) {
      if (response.status === 401) {
        // The session expired: reloading the page leads to the sign-in form.
        window.location.reload();
        return null;
      }
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    }).then(function (html) {
      if (html === null || last.get(element) === html) {
        return;
      }
      // Keep the user's focus: do not replace a table while a control in it has focus.
      var active = document.activeElement;
      if (active && active !== document.body && element.contains(active) &&
          (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA")) {
        return;
      }
      element.innerHTML = html;
      last.set(element, html);
      element.setAttribute("data-refreshed-at", String(Date.now()));
    });
  }

  function tick() {
    if (inFlight || document.hidden) {
      return;
    }
    inFlight = true;
    Promise.all(targets.map(refresh)).then(function () {
      setStatus("live · updated " + new Date().toLocaleTimeString());
    }, function () {
      setStatus("live · refresh failed, retrying");
    }).then(function () {
      inFlight = false;
    });
  }

  setStatus("live");
  window.setInterval(tick, seconds * 1000);
}());
