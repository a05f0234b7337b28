// The only script: live audit progress and the live quorum indicator. Every page works without it.
(function () {
  "use strict";
  function poll(url, every, handle) {
    function tick() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data && handle(data) !== false) { setTimeout(tick, every); } })
        .catch(function () { setTimeout(tick, every * 3); });
    }
    setTimeout(tick, every);
  }
  // Follow an audit only while one is under way (or its case still waits for the verdict); reload once
  // when the verdict has moved the case on. A page that shows a finished audit is left alone.
  var audit = document.getElementById("audit-status");
  var shown = audit ? audit.querySelector(".js-status") : null;
  var initial = shown ? (shown.dataset.status || shown.textContent.trim()) : "";  // the value, not its words
  if (audit && audit.dataset.progressUrl &&
      (initial === "queued" || initial === "running" || audit.dataset.state === "auditing")) {
    poll(audit.dataset.progressUrl, 2000, function (data) {
      var bar = audit.querySelector(".js-progress"), pct = audit.querySelector(".js-percent"),
          status = audit.querySelector(".js-status");
      if (bar && data.total) { bar.max = data.total; bar.value = data.done; }
      if (pct) { pct.textContent = data.percent + "%"; }
      if (status && data.status) { status.dataset.status = data.status; status.textContent = data.status_label || data.status; }
      if (data.status === "completed" || data.status === "failed" || data.status === "cancelled") {
        if (data.state === "auditing") { return true; }  // the verdict is not applied to the case yet
        window.location.reload();
        return false;
      }
      return data.status === "queued" || data.status === "running" || data.state === "auditing";
    });
  }
  var agenda = document.getElementById("agenda");
  if (agenda && agenda.dataset.quorumUrl) {
    poll(agenda.dataset.quorumUrl, 5000, function (data) {
      data.agenda.forEach(function (row) {
        var tr = agenda.querySelector('tr[data-case="' + row.case + '"]');
        if (!tr) { return; }
        // the same words the page was rendered with (the server says them in the reader's language)
        var cell = tr.querySelector(".js-quorum span");
        if (cell) { cell.className = "quorum " + (row.met ? "met" : "unmet"); cell.textContent = row.quorum_label; }
        var shortfalls = tr.querySelector(".js-shortfalls");
        if (shortfalls) { shortfalls.textContent = row.shortfall_text; }
        var votes = tr.querySelector(".js-votes");
        if (votes) { votes.textContent = row.votes_label; }
      });
    });
  }
}());
