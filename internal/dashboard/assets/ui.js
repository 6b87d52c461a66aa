// Live updates: the page's one SSE stream (body[data-events]) sends JSON
// objects of fragment id → HTML rendered by the server; each replaces the
// element with the same data-live id. Without JavaScript the page still
// shows its state as loaded.
(function () {
  "use strict";
  var src = document.body.getAttribute("data-events");
  if (!src || !window.EventSource) return;
  var es = new EventSource(src);
  es.onmessage = function (e) {
    var m;
    try { m = JSON.parse(e.data); } catch (err) { return; }
    Object.keys(m).forEach(function (k) {
      var el = document.querySelector('[data-live="' + k + '"]');
      if (el) el.innerHTML = m[k];
    });
    document.body.setAttribute("data-updated", String(Date.now()));
  };
  // Close before the page unloads so the server frees the stream at once.
  window.addEventListener("pagehide", function () { es.close(); });
})();
