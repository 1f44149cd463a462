/* The contact form's live suggestions (vanilla JS, no dependencies).
 *
 * While the customer types the subject or description, ask the suggest endpoint for up to
 * five articles — once typing pauses for 250 ms, never per keystroke, and a newer question
 * aborts an older one still in flight. An article opens inside the panel (the form and what
 * was typed stay untouched); "This answers my question" ends the visit as deflected. Without
 * this script the form still works: the server shows suggestions on a second step.
 */
(function () {
  "use strict";
  var form = document.getElementById("contact-form");
  if (!form || !window.fetch) { return; }

  var DEBOUNCE_MS = 250;
  var MIN_CHARS = 3;
  var panel = document.getElementById("suggestions");
  var list = document.getElementById("suggestion-list");
  var listView = document.getElementById("suggestion-list-view");
  var articleView = document.getElementById("article-view");
  var articleContent = document.getElementById("article-content");
  var deflected = document.getElementById("deflected");
  var main = form.closest(".contact-main");
  var subject = form.elements.namedItem("subject");
  var body = form.elements.namedItem("body");
  var csrf = form.elements.namedItem("csrf_token").value;
  var suggestUrl = form.getAttribute("data-suggest-url");
  var articleUrl = form.getAttribute("data-article-url");
  var deflectUrl = form.getAttribute("data-deflect-url");

  // The customer sees suggestions as they type: no second step before the ticket.
  form.elements.namedItem("confirmed").value = "1";

  var timer = null;
  var inflight = null;
  var lastQuery = "";
  var openArticle = null; // {id, openedAt}

  function query() {
    var text = (subject.value + " " + body.value).replace(/\s+/g, " ").trim();
    return text.slice(0, 500);
  }

  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, DEBOUNCE_MS);
  }

  function refresh() {
    timer = null;
    var q = query();
    if (q.length < MIN_CHARS || q === lastQuery) { return; }
    lastQuery = q;
    if (inflight) { inflight.abort(); }
    var controller = new AbortController();
    inflight = controller;
    fetch(suggestUrl + "?limit=5&q=" + encodeURIComponent(q), {
      headers: { "Accept": "application/json" },
      credentials: "same-origin",
      signal: controller.signal
    }).then(function (response) {
      if (!response.ok) { throw new Error("suggest " + response.status); }
      return response.json();
    }).then(function (data) {
      if (inflight === controller) { inflight = null; }
      render((data && data.articles) || []);
    }).catch(function (error) {
      if (error.name !== "AbortError") { lastQuery = ""; }
    });
  }

  function articleId(url) {
    var match = /\/help\/articles\/(\d+)-/.exec(url || "");
    return match ? match[1] : null;
  }

  function render(articles) {
    if (openArticle) { return; } // keep the article the customer is reading
    list.textContent = "";
    if (!articles.length) {
      panel.hidden = true;
      return;
    }
    articles.slice(0, 5).forEach(function (article) {
      var item = document.createElement("li");
      var id = articleId(article.url);
      var title;
      if (id) {
        title = document.createElement("button");
        title.type = "button";
        title.className = "article-open";
        title.setAttribute("data-article-id", id);
        title.addEventListener("click", function () { open(id, title); });
      } else {
        title = document.createElement("a");
        title.href = article.url;
        title.target = "_blank";
        title.rel = "noopener";
      }
      title.textContent = article.title;
      item.appendChild(title);
      if (article.snippet) {
        var snippet = document.createElement("p");
        snippet.className = "snippet";
        snippet.textContent = article.snippet;
        item.appendChild(snippet);
      }
      list.appendChild(item);
    });
    panel.hidden = false;
  }

  function open(id, opener) {
    fetch(articleUrl + id, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("article " + response.status); }
        return response.text();
      })
      .then(function (html) {
        // Our own server-rendered, sanitized article fragment (see contact/_article.html).
        articleContent.innerHTML = html;
        openArticle = { id: id, openedAt: Date.now(), opener: opener };
        listView.hidden = true;
        articleView.hidden = false;
        articleContent.focus();
      })
      .catch(function () {
        window.open("/help/articles/" + id + "-article", "_blank", "noopener");
      });
  }

  function readSeconds() {
    return openArticle ? Math.round((Date.now() - openArticle.openedAt) / 1000) : 0;
  }

  function reportReadTime() {
    if (!openArticle) { return; }
    var data = new FormData();
    data.append("csrf_token", csrf);
    data.append("seconds", String(readSeconds()));
    var url = articleUrl + openArticle.id + "/read";
    if (navigator.sendBeacon) {
      navigator.sendBeacon(url, data);
    } else {
      fetch(url, { method: "POST", body: data, credentials: "same-origin", keepalive: true });
    }
  }

  function close() {
    reportReadTime();
    var opener = openArticle && openArticle.opener;
    openArticle = null;
    articleView.hidden = true;
    articleContent.textContent = "";
    listView.hidden = false;
    if (opener && document.body.contains(opener)) { opener.focus(); }
    lastQuery = "";
    schedule();
  }

  function answers() {
    if (!openArticle) { return; }
    reportReadTime();
    var data = new FormData();
    data.append("csrf_token", csrf);
    data.append("article_id", openArticle.id);
    data.append("email", form.elements.namedItem("email").value);
    fetch(deflectUrl, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": csrf }
    }).then(function (response) {
      if (!response.ok) { throw new Error("deflect " + response.status); }
      openArticle = null;
      main.hidden = true;
      panel.hidden = true;
      deflected.hidden = false;
      deflected.focus();
    }).catch(function () {
      window.alert("Sorry, that didn't work. Please try again.");
    });
  }

  subject.addEventListener("input", schedule);
  body.addEventListener("input", schedule);
  document.getElementById("article-back").addEventListener("click", close);
  document.getElementById("article-answers").addEventListener("click", answers);
  window.addEventListener("pagehide", reportReadTime);
  deflected.setAttribute("tabindex", "-1");
  if (query().length >= MIN_CHARS) { schedule(); }
})();
