// Live progress of a send on the issue page: polls the progress endpoint while the issue is
// scheduled or sending, and reloads the page when the send ends or pauses.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box) { return; }
  function update(data) {
    Object.keys(data).forEach(function (key) {
      var el = box.querySelector('[data-field="' + key + '"]');
      if (el) { el.textContent = key === "rate" ? Number(data[key]).toFixed(1) : data[key]; }
    });
    var bar = box.querySelector("progress");
    if (bar) { bar.max = data.total || 1; bar.value = data.total - data.left; }
  }
  function waiting(data) { return data.status === "sending" || Boolean(data.scheduled_for); }
  function poll() {
    fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { setTimeout(poll, 3000); return; }
        update(data);
        if (waiting(data)) { setTimeout(poll, 1000); }
        else if (data.status !== box.dataset.status) { window.location.reload(); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  if (box.dataset.status === "sending" || box.dataset.scheduled) { poll(); }
})();

// Times the server wrote in UTC, also in the editor's own time zone.
(function () {
  "use strict";
  document.querySelectorAll("time[data-local-time]").forEach(function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (isNaN(when)) { return; }
    var local = when.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
      timeZoneName: "short"
    });
    el.textContent = el.textContent + " (" + local + " your time)";
  });
})();

// Each table cell learns its column's heading, which the phone layout shows before it.
(function () {
  "use strict";
  document.querySelectorAll("main table").forEach(function (table) {
    var heads = Array.prototype.map.call(
      table.querySelectorAll("thead th"), function (th) { return th.textContent.trim(); });
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      Array.prototype.forEach.call(tr.children, function (td, i) {
        if (heads[i] && !td.hasAttribute("data-label") && !td.hasAttribute("colspan")) {
          td.setAttribute("data-label", heads[i]);
        }
      });
    });
  });
})();
