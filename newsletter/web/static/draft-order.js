// Drag to reorder the draft: papers within and across sections, and sections themselves,
// with SortableJS (vendor/Sortable.min.js, from npm). After each drop the whole order goes
// to the server as one revision; a refused order (the draft changed elsewhere) reloads the
// page. The "Move up/down" and "Section up/down" buttons do the same without a mouse.
(function () {
  "use strict";
  var list = document.getElementById("sections");
  var form = document.getElementById("draft");
  if (!list || !form || !list.dataset.orderUrl || !window.Sortable) { return; }
  var state = document.getElementById("save-state");
  var base = form.querySelector('input[name="base_revision"]');

  function order() {
    return Array.prototype.map.call(list.querySelectorAll(":scope > li.section"), function (li) {
      var papers = li.querySelectorAll("ol.papers > li[data-paper]");
      return {
        section: li.getAttribute("data-section"),
        papers: Array.prototype.map.call(papers, function (p) {
          return Number(p.getAttribute("data-paper"));
        })
      };
    });
  }
  function send() {
    var body = new FormData();
    body.append("csrf_token", form.querySelector('input[name="csrf_token"]').value);
    body.append("order", JSON.stringify(order()));
    state.textContent = "Saving the order…";
    fetch(list.dataset.orderUrl, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { Accept: "application/json" }
    }).then(function (r) { return r.json(); }).then(function (data) {
      if (!data.ok) {
        state.textContent = "Not saved: " + data.error;
        state.classList.add("error");
        setTimeout(function () { window.location.reload(); }, 2500);
        return;
      }
      base.value = data.revision;
      state.classList.remove("error");
      state.textContent = "Saved · revision " + data.revision;
    }).catch(function () {
      state.textContent = "Not saved: the connection failed; reload the page";
      state.classList.add("error");
    });
  }
  function ended(event) {
    if (event.from !== event.to || event.oldIndex !== event.newIndex) { send(); }
  }
  var options = { animation: 150, onEnd: ended, ghostClass: "drag-ghost" };
  window.Sortable.create(list, Object.assign({ handle: ".section-handle", draggable: "li.section" }, options));
  list.querySelectorAll("ol.papers").forEach(function (ol) {
    window.Sortable.create(ol, Object.assign({
      group: "papers", handle: ".drag-handle:not(.section-handle)", draggable: "li.paper"
    }, options));
  });
})();
