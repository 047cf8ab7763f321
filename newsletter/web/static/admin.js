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

// The draft page is one form. Edits save by themselves a moment after typing stops (only
// the fields touched, so another tab's saves are never overwritten); leaving with unsaved
// edits asks first. Without JavaScript the form's own buttons save everything at once.
(function () {
  "use strict";
  var form = document.getElementById("draft");
  if (!form || !window.fetch || !window.FormData) { return; }
  var state = document.getElementById("save-state");
  var base = form.querySelector('input[name="base_revision"]');
  var dirty = {};  // field name -> paper id ("" for the page's own fields)
  var timer = null;
  var inFlight = false;
  var submitting = false;

  function say(text, failed) {
    state.textContent = text;
    state.classList.toggle("error", Boolean(failed));
  }
  function paperOf(el) {
    var card = el.closest("[data-paper]");
    return card ? card.getAttribute("data-paper") : "";
  }
  function save() {
    timer = null;
    var names = Object.keys(dirty);
    if (!names.length || inFlight) { return; }
    var all = new FormData(form);
    var body = new FormData();
    body.append("csrf_token", all.get("csrf_token"));
    body.append("base_revision", base.value);
    var papers = {};
    names.forEach(function (name) {
      all.getAll(name).forEach(function (value) { body.append(name, value); });
      if (dirty[name]) { papers[dirty[name]] = true; }
    });
    Object.keys(papers).forEach(function (id) { body.append("paper", id); });
    var sent = {};
    names.forEach(function (name) { sent[name] = dirty[name]; });
    dirty = {};
    inFlight = true;
    say("Saving…");
    fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { Accept: "application/json" }
    }).then(function (r) {
      return r.json().then(function (data) { return { ok: r.ok, data: data }; });
    }).then(function (answer) {
      inFlight = false;
      if (!answer.ok || !answer.data.ok) {
        Object.keys(sent).forEach(function (n) { if (!(n in dirty)) { dirty[n] = sent[n]; } });
        say("Not saved: " + (answer.data.error || "the server refused the change"), true);
        return;
      }
      base.value = answer.data.revision;
      form.setAttribute("data-revision", answer.data.revision);
      if (Object.keys(dirty).length) { schedule(); return; }
      say("Saved · revision " + answer.data.revision);
    }).catch(function () {
      inFlight = false;
      Object.keys(sent).forEach(function (n) { if (!(n in dirty)) { dirty[n] = sent[n]; } });
      say("Not saved: the connection failed; retrying", true);
      timer = setTimeout(save, 5000);
    });
  }
  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(save, 1200);
  }
  function edited(event) {
    var el = event.target;
    if (!el.name || el.type === "hidden" || el.name === "add_paper" || el.name === "arxiv") {
      return;
    }
    dirty[el.name] = paperOf(el);
    say("Unsaved changes…");
    schedule();
  }
  form.addEventListener("input", edited);
  form.addEventListener("change", edited);
  form.addEventListener("submit", function () { submitting = true; });
  window.addEventListener("beforeunload", function (event) {
    if (submitting || (!Object.keys(dirty).length && !inFlight)) { return; }
    event.preventDefault();
    event.returnValue = "";
  });
})();
