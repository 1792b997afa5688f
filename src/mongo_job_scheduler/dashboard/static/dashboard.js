// The dashboard's only script (the Content-Security-Policy refuses inline ones). Pages work
// without it; with it:
// - every <time class="rel" datetime="..."> reads "3 h ago", "in 12 min" or, with data-due,
//   "overdue by 8 s", and its title holds the exact moment in the browser's time zone;
// - every element with data-refresh-url is re-rendered in place from that URL every
//   data-refresh-seconds (on <body>) seconds, without reloading the page;
// - the status chips of a form with data-autosubmit apply as soon as they are toggled.
(function () {
  "use strict";

  // -- relative times ----------------------------------------------------------------------

  var zone = (function () {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    } catch (e) {
      return "UTC";
    }
  }());
  var exact = (function () {
    var options = {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      second: "2-digit", hourCycle: "h23"
    };
    try {
      return new Intl.DateTimeFormat("en-CA", Object.assign({ timeZone: zone }, options));
    } catch (e) {
      zone = "UTC";
      return new Intl.DateTimeFormat("en-CA", Object.assign({ timeZone: "UTC" }, options));
    }
  }());

  function exactText(date) {
    var parts = {};
    exact.formatToParts(date).forEach(function (part) {
      parts[part.type] = part.value;
    });
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" +
      parts.minute + ":" + parts.second + " " + zone;
  }

  function span(seconds) {
    // Seconds as they are; larger spans rounded to one unit: 12 min, 3 h, 4 d.
    var s = Math.abs(seconds);
    if (s < 60) {
      return Math.floor(s) + " s";
    }
    var minutes = Math.round(s / 60);
    if (minutes < 60) {
      return minutes + " min";
    }
    var hours = Math.round(s / 3600);
    if (hours < 48) {
      return hours + " h";
    }
    return Math.round(s / 86400) + " d";
  }

  function relative(date, now, due) {
    var seconds = (date.getTime() - now) / 1000;
    if (Math.abs(seconds) < 1) {
      return "now";
    }
    if (seconds > 0) {
      return "in " + span(seconds);
    }
    return due ? "overdue by " + span(seconds) : span(seconds) + " ago";
  }

  function relabel(root) {
    var now = Date.now();
    var times = (root || document).querySelectorAll("time.rel[datetime]");
    Array.prototype.forEach.call(times, function (element) {
      var date = new Date(element.getAttribute("datetime"));
      if (isNaN(date.getTime())) {
        return;
      }
      var text = relative(date, now, element.hasAttribute("data-due"));
      if (element.textContent !== text) {
        element.textContent = text;
      }
      var title = exactText(date);
      if (element.title !== title) {
        element.title = title;
      }
    });
  }

  relabel(document);
  window.setInterval(function () {
    if (!document.hidden) {
      relabel(document);
    }
  }, 5000);

  // -- filters that apply at once ----------------------------------------------------------

  Array.prototype.forEach.call(document.querySelectorAll("form[data-autosubmit]"), function (form) {
    form.addEventListener("change", function (event) {
      var target = event.target;
      if (target && target.type === "checkbox") {
        if (typeof form.requestSubmit === "function") {
          form.requestSubmit();
        } else {
          form.submit();
        }
      }
    });
  });

  // -- live refresh ------------------------------------------------------------------------

  var seconds = parseFloat(document.body.getAttribute("data-refresh-seconds") || "0");
  var status = document.getElementById("live-status");
  var targets = Array.prototype.slice.call(document.querySelectorAll("[data-refresh-url]"));
  if (!(seconds > 0) || targets.length === 0) {
    return;
  }
  var inFlight = false;
  var cycles = 0;
  var last = new Map();

  function setStatus(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function busy(element) {
    // Leave a region alone while the user works in it: a form control in it has focus, or
    // the keyboard focus is on anything in it (a refresh would throw that focus away).
    var active = document.activeElement;
    if (!active || active === document.body || !element.contains(active)) {
      return false;
    }
    if (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA") {
      return true;
    }
    try {
      return active.matches(":focus-visible");
    } catch (e) {
      return false;
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
      if (html === null || last.get(element) === html || busy(element)) {
        return;
      }
      // Sections the user opened stay open.
      var open = Array.prototype.map.call(
        element.querySelectorAll("details[open][id]"), function (details) { return details.id; }
      );
      element.innerHTML = html;
      open.forEach(function (id) {
        var details = document.getElementById(id);
        if (details && element.contains(details)) {
          details.open = true;
        }
      });
      relabel(element);
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
      cycles += 1;
      if (status) {
        status.setAttribute("data-cycles", String(cycles));
      }
      relabel(document);
    });
  }

  setStatus("live");
  window.setInterval(tick, seconds * 1000);
}());
