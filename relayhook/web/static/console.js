// Relayhook console: small enhancements only. Every flow works without this file.
(function () {
  "use strict";

  // Copy buttons: shown only when this script runs.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
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
  });

  function select(node) {
    if (node.tagName === "INPUT") { node.select(); return; }
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // The hook form: choosing a preset applies it; the preview follows the form as it changes.
  var form = document.getElementById("hook-form");
  if (!form) return;
  var preset = document.getElementById("preset");
  var usePreset = document.getElementById("use-preset");
  if (preset && usePreset) {
    preset.addEventListener("change", function () { if (preset.value) usePreset.click(); });
  }
  var curl = document.getElementById("preview-curl");
  var source = document.getElementById("preview-source");
  var timer = null;
  var latest = 0;
  function refresh() {
    var data = new URLSearchParams(new FormData(form));
    var asked = ++latest;
    fetch(form.getAttribute("data-preview"), {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) { return response.json(); }).then(function (answer) {
      if (asked !== latest) return;
      curl.textContent = answer.curl;
      var problems = Object.values(answer.errors || {});
      source.textContent = problems.length ? "Not valid yet: " + problems.join("; ") : answer.source;
    }).catch(function () { /* the Preview button still works */ });
  }
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  });
  form.addEventListener("change", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 150);
  });
  refresh();
})();
