// berth's dashboard: keeps the page's <main> current. The agent sends a server-sent event
// whenever something shown may have changed; the page then fetches its own <main> again.
// Without JavaScript every page still works, reloaded by hand.
(function () {
  "use strict";
  var status = document.getElementById("live");
  var main = document.getElementById("main");
  var busy = false, again = false;

  function say(text, state) {
    status.textContent = text;
    status.className = "live " + state;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        // keep the focused link or button focused across the update
        var focused = document.activeElement;
        var key = focused && (focused.getAttribute("href") || focused.getAttribute("data-node"));
        main.innerHTML = html;
        document.body.setAttribute("data-updated", String(Date.now()));
        if (key) {
          var again = main.querySelector('[href="' + CSS.escape(key) + '"]');
          if (again) { again.focus(); }
        }
      })
      .catch(function () { say("connection lost: retrying…", "lost"); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var opened = false;

  function connect() {
    var events = new EventSource("/live");
    var first = true;
    events.onopen = function () { say("live", "ok"); };
    events.onmessage = function () {
      say("live", "ok");
      // the first message says the feed is open: news only after a lost connection
      if (first) {
        first = false;
        if (opened) { refresh(); }
        opened = true;
        return;
      }
      refresh();
    };
    events.onerror = function () {
      say("connection lost: retrying…", "lost");
      first = true;
      if (events.readyState === EventSource.CLOSED) {
        setTimeout(connect, 2000);
      }
    };
  }

  if (status && main && window.EventSource) { connect(); }
})();
