// Order status page: polls the order's JSON (same URL, Accept: application/json) and, when
// it changes, swaps in the re-rendered page body without a full reload. Stops at a final
// state (data-poll="0"); data-poll="email" re-fetches the page until the key's email is
// sent. Also the "Copy key" button. No inline script: the CSP forbids it.
(function () {
  "use strict";
  var POLL_MS = 3000;
  var MAX_POLLS = 1200; // about an hour; after that a reload resumes
  var polls = 0;
  var lastJson = null;

  function main() { return document.getElementById("content"); }

  function refreshPage() {
    return fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (text) {
        if (text === null) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("content");
        if (!fresh) { return; }
        var current = main();
        current.innerHTML = fresh.innerHTML;
        current.setAttribute("data-poll", fresh.getAttribute("data-poll") || "0");
        current.setAttribute("data-status", fresh.getAttribute("data-status") || "");
        document.title = doc.title;
      });
  }

  function poll() {
    var current = main();
    var mode = current ? current.getAttribute("data-poll") : "0";
    if (polls >= MAX_POLLS || (mode !== "1" && mode !== "email")) { return; }
    polls += 1;
    if (mode === "email") {
      // Paid, key shown; only the "we emailed it" line can still change.
      refreshPage()
        .catch(function () { /* next round retries */ })
        .then(function () { window.setTimeout(poll, POLL_MS); });
      return;
    }
    fetch(window.location.href, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (text) {
        if (text === null) { return null; }
        var status = JSON.parse(text).status;
        var changed = lastJson === null
          ? status !== current.getAttribute("data-status")
          : text !== lastJson;
        lastJson = text;
        return changed ? refreshPage() : null;
      })
      .catch(function () { /* offline for a moment: the next poll retries */ })
      .then(function () { window.setTimeout(poll, POLL_MS); });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy") : null;
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    var note = document.getElementById("copy-status");
    if (!source) { return; }
    var text = source.textContent.trim();
    var done = function (message) { if (note) { note.textContent = message; } };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(
        function () { done("Copied"); },
        function () { selectText(source); done("Press Ctrl+C to copy"); }
      );
    } else {
      selectText(source);
      done("Press Ctrl+C to copy");
    }
  });

  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { window.setTimeout(poll, POLL_MS); });
  } else {
    window.setTimeout(poll, POLL_MS);
  }
})();
