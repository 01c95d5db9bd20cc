// ctrltower web UI: a few lines of vanilla JS (vendored, no CDN). Pages work without it, except the
// pipeline node inspector.
(function () {
  "use strict";
  // Confirmation for agent actions: fill the hidden "confirm" field only when the user agrees; the
  // server asks again on its own page when the field is empty (no-JS fallback).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (window.confirm(form.getAttribute("data-confirm"))) {
        var field = form.querySelector("input[name=confirm]");
        if (field) { field.value = "yes"; }
      } else {
        ev.preventDefault();
      }
    });
  });
  // Selectors that navigate on change (the group picker); the Show button does the same without JS.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // Pipeline graphs: a click (or Enter) on a node shows its config from the embedded JSON.
  document.querySelectorAll("[data-graph]").forEach(function (box) {
    var data = JSON.parse(box.querySelector("script[type='application/json']").textContent);
    var panel = box.querySelector(".node-config");
    function show(node) {
      box.querySelectorAll(".node.selected").forEach(function (n) { n.classList.remove("selected"); });
      node.classList.add("selected");
      var id = node.getAttribute("data-node");
      var info = data[id] || {};
      panel.querySelector(".node-title").textContent = info["class"] + " " + id + " (" + info.type + ")";
      panel.querySelector("pre").textContent = info.config === null || info.config === undefined
        ? "(no config)" : JSON.stringify(info.config, null, 2);
      panel.hidden = false;
    }
    box.querySelectorAll(".node").forEach(function (node) {
      node.addEventListener("click", function () { show(node); });
      node.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { show(node); } });
    });
  });
})();
