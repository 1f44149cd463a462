/* Handoff keyboard shortcuts for agents. Plain JavaScript, no build step, no dependencies.

   Inbox:  j / k move the selection (highlighted row, scrolled into view, aria-current),
           o or Enter open the selected ticket.
   Ticket: r reply, n internal note (switch the composer and focus it),
           a assign to me, s solve (both submit the page's own CSRF-protected forms).
   Everywhere: / focuses search, ? shows the shortcuts dialog (Esc closes it).

   Shortcuts never fire while typing in a field, with Ctrl/Alt/Meta held, or while a dialog
   is open. Everything they do is also a visible, labelled control on the page, so the pages
   work the same without JavaScript. The inbox list may be replaced by htmx at any time, so
   rows are looked up on every key press rather than remembered. */
(function () {
  "use strict";

  var ROWS = "table.tickets tbody tr[data-ticket-number]";

  function isTyping(target) {
    if (!target || !target.closest) return false;
    if (target.isContentEditable) return true;
    return Boolean(target.closest("input, textarea, select, [contenteditable]"));
  }

  function openDialog() {
    var dialog = document.getElementById("shortcuts-dialog");
    if (dialog && !dialog.open && typeof dialog.showModal === "function") dialog.showModal();
  }

  // -- inbox ------------------------------------------------------------------------------

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll(ROWS));
  }

  function selectedRow() {
    return document.querySelector(ROWS + ".selected");
  }

  function select(row) {
    rows().forEach(function (other) {
      other.classList.remove("selected");
      other.removeAttribute("aria-current");
    });
    row.classList.add("selected");
    row.setAttribute("aria-current", "true");
    row.scrollIntoView({ block: "nearest" });
    var link = row.querySelector("a[href]");
    // Focus follows the selection, so screen readers announce the ticket and Enter opens it.
    if (link) link.focus({ preventScroll: true });
  }

  function move(step) {
    var all = rows();
    if (!all.length) return false;
    var index = all.indexOf(selectedRow());
    if (index === -1) index = step > 0 ? 0 : all.length - 1;
    else index = Math.min(all.length - 1, Math.max(0, index + step));
    select(all[index]);
    return true;
  }

  function openSelected() {
    var row = selectedRow();
    var link = row && row.querySelector("a[href]");
    if (!link) return false;
    window.location.assign(link.href);
    return true;
  }

  // -- ticket page ------------------------------------------------------------------------

  function compose(mode) {
    var modeField = document.getElementById("composer-mode");
    var body = document.getElementById("composer-body");
    if (!modeField || !body) return false;
    modeField.value = mode;
    modeField.dispatchEvent(new Event("change", { bubbles: true }));
    body.focus();
    return true;
  }

  function submitWith(selectId, value) {
    var field = document.getElementById(selectId);
    if (!field || !field.form || value === null || value === undefined) return false;
    var known = Array.prototype.some.call(field.options, function (option) {
      return option.value === value;
    });
    if (!known) return false;
    field.value = value;
    // requestSubmit runs the submit event, so htmx (when loaded) can take the form over. A
    // form htmx has just swapped in may not have its handlers yet (they are bound as the swap
    // settles): bind them now (a no-op for a form already processed), or a key pressed right
    // after a swap would post the form natively and reload the page.
    if (window.htmx) window.htmx.process(field.form);
    if (typeof field.form.requestSubmit === "function") field.form.requestSubmit();
    else field.form.submit();
    return true;
  }

  function assignToMe() {
    var me = document.body.getAttribute("data-agent-id");
    return submitWith("assign-assignee", me);
  }

  function solve() {
    return submitWith("status-status", "solved");
  }

  // -- everywhere ---------------------------------------------------------------------------

  function focusSearch() {
    var box = document.getElementById("inbox-search") || document.getElementById("top-search");
    if (!box) return false;
    box.focus();
    if (typeof box.select === "function") box.select();
    return true;
  }

  var ACTIONS = {
    j: function () { return move(1); },
    k: function () { return move(-1); },
    o: openSelected,
    Enter: openSelected,
    r: function () { return compose("reply"); },
    n: function () { return compose("note"); },
    a: assignToMe,
    s: solve,
    "/": focusSearch,
    "?": function () { openDialog(); return true; },
  };

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target)) return;
    if (document.querySelector("dialog[open]")) return;
    var action = ACTIONS[event.key];
    if (!action) return;
    // Enter on a link or button does what that control does; it only opens the selected
    // row when nothing else has focus (or the focus is that row's own link).
    if (event.key === "Enter") {
      var target = event.target;
      var row = selectedRow();
      var onControl = target && target.closest && target.closest("a, button, summary, [tabindex]");
      if (!row || (onControl && !row.contains(target))) return;
    }
    if (action()) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target || !target.closest) return;
    if (target.closest("[data-shortcuts-open]")) openDialog();
    var closer = target.closest("[data-shortcuts-close]");
    if (closer) {
      var dialog = closer.closest("dialog");
      if (dialog) dialog.close();
    }
  });

  function reveal() {
    // The "Keyboard shortcuts" button only makes sense when this script runs.
    Array.prototype.forEach.call(document.querySelectorAll("[data-shortcuts-open]"), function (b) {
      b.hidden = false;
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", reveal);
  else reveal();
})();
