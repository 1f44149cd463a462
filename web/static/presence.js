/* Handoff ticket presence: tell the server this agent has the ticket open, and whether they
   are writing a reply; show who else is ("Dana is replying…").

   A heartbeat (POST, CSRF token in the X-CSRFToken header) goes out when the page loads,
   every 20 seconds, and as soon as the composer switches between "writing a reply" (Reply
   mode with text in it) and not. Its answer is the presence line, shown in #presence. The
   server forgets a presence a minute after its last heartbeat, so a closed tab needs no
   goodbye. Without JavaScript the page still shows who was present when it loaded. */
(function () {
  "use strict";

  var INTERVAL_MS = 20000;
  // A change of state is told once the typing settles (one beat, not one per key); the first
  // beat goes a few seconds after load, so a glance at a ticket costs no write at all.
  var SETTLE_MS = 1000;
  var FIRST_BEAT_MS = 3000;

  function start() {
    var line = document.getElementById("presence");
    var composer = document.getElementById("composer");
    if (!line || !composer) return;
    var url = line.getAttribute("data-presence-url");
    var token = composer.querySelector('input[name$="csrf_token"]');
    var body = document.getElementById("composer-body");
    var mode = document.getElementById("composer-mode");
    var lastSent = null;
    var inFlight = false;
    var settle = null;

    function activity() {
      var writing = body && body.value.trim() !== "" && (!mode || mode.value === "reply");
      return writing ? "replying" : "viewing";
    }

    function send() {
      if (inFlight || !url || !token) return;
      var now = activity();
      var ok = false;
      inFlight = true;
      fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "X-CSRFToken": token.value,
          "Content-Type": "application/x-www-form-urlencoded",
        },
        body: "activity=" + encodeURIComponent(now),
      })
        .then(function (response) {
          // A signed-out agent's beat is redirected to the sign-in page: never show that.
          if (!response.ok || response.redirected) return null;
          ok = true;
          lastSent = now;
          return response.text();
        })
        .then(function (html) {
          // Server-rendered and escaped by Jinja (agent names only).
          if (html !== null) line.innerHTML = html;
        })
        .catch(function () { /* offline for a moment: the next beat tries again */ })
        .then(function () {
          inFlight = false;
          // Typed (or cleared) while this beat was on its way: say so now. After a
          // failure, wait for the next regular beat instead of retrying in a loop.
          if (ok && activity() !== lastSent) send();
        });
    }

    function changed() {
      window.clearTimeout(settle);
      settle = window.setTimeout(function () {
        if (activity() !== lastSent) send();
      }, SETTLE_MS);
    }

    if (body) body.addEventListener("input", changed);
    if (mode) mode.addEventListener("change", changed);
    window.setTimeout(send, FIRST_BEAT_MS);
    window.setInterval(send, INTERVAL_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
