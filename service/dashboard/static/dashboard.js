// pixhook dashboard: live updates over server-sent events. No build step, no libraries.
// Pages work without this script; it only keeps them fresh.
(function () {
  "use strict";

  function age(seconds) {
    var units = [["d", 86400], ["h", 3600], ["m", 60]];
    seconds = Math.max(0, seconds);
    for (var i = 0; i < units.length; i++) {
      if (seconds >= units[i][1]) return Math.floor(seconds / units[i][1]) + units[i][0];
    }
    return Math.floor(seconds) + "s";
  }

  function refreshAges() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-ts]").forEach(function (el) {
      el.textContent = age(now - parseFloat(el.getAttribute("data-ts")));
    });
  }
  setInterval(refreshAges, 5000);

  var live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) return;
  var status = document.getElementById("live-status");

  function setStatus(text, on) {
    if (!status) return;
    status.hidden = false;
    status.textContent = text;
    status.className = "live " + (on ? "live-on" : "live-off");
  }

  // The jobs list: replace or insert the row the server rendered, drop rows that left the filter.
  function onJob(data) {
    var body = document.getElementById("jobs-body");
    if (!body) return;
    var existing = document.getElementById("job-" + data.id);
    if (!data.matches) {
      if (existing) existing.remove();
      showEmpty(body);
      return;
    }
    var template = document.createElement("template");
    template.innerHTML = data.html.trim();  // rendered and escaped by the server's templates
    var row = template.content.firstElementChild;
    row.classList.add("changed");
    if (existing) {
      existing.replaceWith(row);
    } else if (live.getAttribute("data-first") === "1") {
      // Newer jobs have larger ids (ULIDs): keep the list newest first.
      var rows = body.querySelectorAll("tr[data-job]");
      var before = null;
      for (var i = 0; i < rows.length; i++) {
        if (rows[i].getAttribute("data-job") < data.id) { before = rows[i]; break; }
      }
      var full = rows.length >= parseInt(live.getAttribute("data-page-size"), 10);
      if (before) body.insertBefore(row, before);
      else if (!full) body.appendChild(row);
    }
    showEmpty(body);
  }

  function showEmpty(body) {
    var any = body.querySelector("tr[data-job]") !== null;
    document.getElementById("jobs-table").hidden = !any;
    document.getElementById("jobs-empty").hidden = any;
  }

  var source = null;
  var retryMs = 1000;
  var FLASH_KEY = "pixhook-flash";

  function restoreFlash() {
    var text = sessionStorage.getItem(FLASH_KEY);
    sessionStorage.removeItem(FLASH_KEY);
    var main = document.querySelector("main");
    if (!text || !main || document.querySelector(".flash")) return;
    var flash = document.createElement("div");
    flash.className = "flash";
    flash.setAttribute("role", "status");
    flash.textContent = text;
    main.insertBefore(flash, main.firstChild);
  }
  restoreFlash();

  function connect() {
    source = new EventSource(live.getAttribute("data-live"));
    source.addEventListener("open", function () {
      retryMs = 1000;
      setStatus("live", true);
    });
    source.addEventListener("job", function (event) { onJob(JSON.parse(event.data)); });
    source.addEventListener("changed", function () {
      source.close();
      // A confirmation shown once by the server must survive the reload it often causes.
      var flash = document.querySelector(".flash");
      if (flash) sessionStorage.setItem(FLASH_KEY, flash.textContent);
      window.location.reload();
    });
    source.addEventListener("store", function (event) {
      var ok = JSON.parse(event.data).ok;
      setStatus(ok ? "live" : "store unavailable", ok);
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (logged out, or the server is down): try again, more slowly each time.
        setStatus("offline, retrying", false);
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      } else {
        setStatus("reconnecting", false);
      }
    });
  }
  connect();
})();
