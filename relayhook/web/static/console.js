// Relayhook console: small enhancements only. Every flow works without this file.
(function () {
  "use strict";

  // Copy buttons: shown only when this script runs (one handler, for content swapped in too).
  document.querySelectorAll("[data-copy]").forEach(function (button) { button.hidden = false; });
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.tagName === "INPUT" ? source.value : source.textContent;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () { select(source); });
    } else {
      select(source);
    }
  });

  function select(node) {
    if (node.tagName === "INPUT") { node.select(); return; }
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // A form post that re-renders the same page (Use preset, Add a row, Preview) comes back where
  // it was: with this script it is fetched and swapped in, without it the page scrolls back.
  var SCROLL_KEY = "relayhook-scroll:" + location.pathname;
  var kept = sessionStorage.getItem(SCROLL_KEY);
  if (kept !== null) {
    sessionStorage.removeItem(SCROLL_KEY);
    window.scrollTo(0, parseInt(kept, 10) || 0);
  }

  // The hook form. Handlers sit on the document: the form's content is swapped in place.
  if (!document.getElementById("hook-form")) return;
  var SWAPPED = { preset: 1, add_header: 1, add_param: 1, add_body: 1, dry_run: 1, preview: 1 };
  function form() { return document.getElementById("hook-form"); }
  function byId(id) { return document.getElementById(id); }

  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var action = button ? button.value : "";
    if (event.target !== form() || !SWAPPED[action] || !window.fetch || !window.DOMParser) {
      if (action) sessionStorage.setItem(SCROLL_KEY, String(window.scrollY));
      return;
    }
    event.preventDefault();
    var data = new URLSearchParams(new FormData(form()));
    data.set("action", action);
    var rowsBefore = action.indexOf("add_") === 0 ? form().querySelectorAll('[id^="' + action.slice(4) + '_key_"]').length : 0;
    fetch(form().getAttribute("action"), {
      method: "POST", body: data, credentials: "same-origin", headers: { "Accept": "text/html" }
    }).then(function (response) { return response.text(); }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      var main = fresh.getElementById("main");
      if (!main) { form().submit(); return; }
      var y = window.scrollY;
      document.getElementById("main").replaceChildren.apply(document.getElementById("main"), Array.prototype.slice.call(main.childNodes));
      window.scrollTo(0, y);
      enhance();
      var focus = action.indexOf("add_") === 0 ? byId(action.slice(4) + "_key_" + rowsBefore) : button.id ? byId(button.id) : null;
      if (action === "preset") focus = form().querySelector('input[name="preset"]:checked');
      if (focus) focus.focus({ preventScroll: true });
    }).catch(function () { form().submit(); });
  });
  document.addEventListener("change", function (event) {
    var node = event.target;
    if (node.name === "preset" && node.checked && node.value && form().contains(node)) {
      var use = byId("use-preset");
      if (use) use.click();
    }
  });

  // Copy buttons and the like inside content swapped in.
  function enhance() {
    document.querySelectorAll("[data-copy]").forEach(function (button) { button.hidden = false; });
  }

  var timer = null;
  var latest = 0;

  // The field picker: a click on a field puts it where the cursor was.
  var target = null;
  document.addEventListener("focusin", function (event) {
    var node = event.target;
    if (!form() || !form().contains(node) || !node.matches("[data-pick], #body")) return;
    if (target) target.classList.remove("pick-target");
    target = node;
    target.classList.add("pick-target");
  });
  function insert(node, text) {
    var start = null, end = null;
    try { start = node.selectionStart; end = node.selectionEnd; } catch (e) { /* type=url */ }
    if (typeof start !== "number") { start = end = node.value.length; }
    node.value = node.value.slice(0, start) + text + node.value.slice(end);
    var at = start + text.length;
    try { node.setSelectionRange(at, at); } catch (e) { /* type=url has no selection */ }
  }
  function pick(path) {
    var status = byId("pick-status");
    if (!target || !document.body.contains(target)) {
      target = target && target.id ? byId(target.id) : null;
    }
    if (!target) {
      status.textContent = "First click in the URL, a row's value or the condition; then on a field.";
      return;
    }
    var kind = target.getAttribute("data-pick");
    if (kind === "row") {
      var sourceSelect = byId(target.id.replace("_value_", "_source_"));
      if (sourceSelect) sourceSelect.value = "event";
      target.type = "text";
      target.value = path;
    } else if (kind === "url") {
      insert(target, "{event." + path + "}");
    } else if (kind === "when") {
      insert(target, target.value.trim() ? "event." + path : "{{ event." + path + " }}");
    } else {
      insert(target, "{{ event." + path + " }}");
    }
    target.focus();
    var label = target.labels && target.labels[0] ? target.labels[0].textContent.trim() : "the field";
    status.textContent = path + " put in " + label + ".";
    schedule(150);
  }
  document.addEventListener("mousedown", function (event) {
    if (event.target.closest && event.target.closest(".field-pick")) event.preventDefault();  // keep the cursor's place
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".field-pick");
    if (button) pick(button.getAttribute("data-path"));
  });
  function showFields(fields) {
    var tree = byId("field-tree");
    var items = fields.map(function (f) {
      var li = document.createElement("li");
      li.className = "depth-" + Math.min(f.depth, 6);
      var button = document.createElement("button");
      button.type = "button";
      button.className = "field-pick";
      button.setAttribute("data-path", f.path);
      button.textContent = f.path;
      li.appendChild(button);
      if (f.value) {
        button.setAttribute("aria-label", f.path + ": " + f.value);
        var value = document.createElement("span");
        value.className = "field-value";
        value.textContent = f.value;
        li.appendChild(document.createTextNode(" "));
        li.appendChild(value);
      }
      return li;
    });
    if (!items.length) {
      var none = document.createElement("li");
      none.className = "muted";
      none.textContent = "No event to show yet: choose the events in step 1.";
      items.push(none);
    }
    tree.replaceChildren.apply(tree, items);
  }
  function showFindings(list) {
    var findings = byId("preview-findings");
    findings.replaceChildren.apply(findings, list.map(function (f) {
      var li = document.createElement("li");
      li.className = "finding finding-" + f.level;
      li.textContent = f.message;
      return li;
    }));
  }
  function refresh() {
    var data = new URLSearchParams(new FormData(form()));
    var asked = ++latest;
    fetch(form().getAttribute("data-preview"), {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) { return response.json(); }).then(function (answer) {
      if (asked !== latest) return;
      byId("preview-curl").textContent = answer.curl;
      var problems = Object.values(answer.errors || {});
      byId("preview-source").textContent = problems.length ? "Not valid yet: " + problems.join("; ") : answer.source;
      showFields(answer.fields || []);
      showFindings(answer.findings || []);
    }).catch(function () { /* the Preview button still works */ });
  }
  function schedule(wait) {
    clearTimeout(timer);
    timer = setTimeout(refresh, wait);
  }
  document.addEventListener("input", function (event) { if (form().contains(event.target)) schedule(400); });
  document.addEventListener("change", function (event) { if (form().contains(event.target)) schedule(150); });
})();
