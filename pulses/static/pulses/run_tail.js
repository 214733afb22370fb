// The live tail of a run, on the admin's pulse page and the dashboard: every element with
// class "reeve-tail" and a data-tail-url asks GET /api/pulses/ID/tail?after=SEQ (with the admin's
// session) once a second, adds the new lines, and stops once the pulse has finished.
"use strict";
(function () {
  var POLL_MS = 1000;
  var KEPT = 500; // lines shown at most; the oldest go first

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function clock(iso) {
    var at = new Date(iso);
    return isNaN(at) ? "" : at.toLocaleTimeString([], { hour12: false });
  }

  function follow(box) {
    var list = box.querySelector(".reeve-tail-events");
    var state = box.querySelector(".reeve-tail-state");
    var after = 0;

    function add(event) {
      var line = document.createElement("li");
      line.className = "reeve-tail-" + event.kind;
      line.dataset.seq = event.seq;
      var time = document.createElement("span");
      time.className = "reeve-tail-at";
      time.textContent = clock(event.at) + " ";
      var kind = document.createElement("span");
      kind.className = "reeve-tail-kind";
      kind.textContent = event.kind + " ";
      var text = document.createElement("span");
      text.className = "reeve-tail-summary";
      text.textContent = event.summary;
      line.append(time, kind, text);
      list.appendChild(line);
      while (list.children.length > KEPT) list.removeChild(list.firstChild);
    }

    function ask() {
      fetch(box.dataset.tailUrl + "?after=" + after, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (page) {
          var atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
          page.events.forEach(add);
          if (atBottom) list.scrollTop = list.scrollHeight;
          after = page.next_after;
          box.dataset.status = page.status;
          if (page.finished) {
            var said = page.answer || page.error;
            state.textContent = "The pulse has ended: " + page.status + (said ? ": " + said.split("\n")[0] : "") + ".";
            return;
          }
          state.textContent = page.status === "processing" ? "Running: the tail updates every second." : "Status: " + page.status + ".";
          setTimeout(ask, POLL_MS);
        })
        .catch(function (error) {
          state.textContent = "The tail could not be read (" + error.message + "); trying again.";
          setTimeout(ask, POLL_MS * 5);
        });
    }
    ask();
  }

  ready(function () {
    document.querySelectorAll(".reeve-tail[data-tail-url]").forEach(follow);
  });
})();
