// The routine form's live preview: as the schedule or the zone changes, ask the admin's preview/
// view for the schedule in words and its next five fire times in the routine's zone (or the error).
"use strict";
(function () {
  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }
  ready(function () {
    var schedule = document.getElementById("id_schedule");
    var zone = document.getElementById("id_timezone");
    if (!schedule || !schedule.dataset.previewUrl) return;
    var box = document.getElementById("routine-preview");
    if (!box) {
      box = document.createElement("div");
      box.id = "routine-preview";
      schedule.closest(".form-row").after(box);
    }
    var timer = null;
    var asked = 0;
    function show(data) {
      box.textContent = "";
      var line = document.createElement("p");
      if (data.error) {
        line.className = "errornote reeve-preview-error";
        line.textContent = data.error.field + ": " + data.error.message;
        box.appendChild(line);
        return;
      }
      line.className = "reeve-schedule-text";
      line.textContent = data.text + " (" + data.zone + ")";
      box.appendChild(line);
      var list = document.createElement("ol");
      data.fires.forEach(function (fire) {
        var item = document.createElement("li");
        item.textContent = fire;
        list.appendChild(item);
      });
      box.appendChild(list);
    }
    function ask() {
      var mine = ++asked;
      var query = new URLSearchParams({ schedule: schedule.value, timezone: zone ? zone.value : "" });
      fetch(schedule.dataset.previewUrl + "?" + query.toString(), { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (data) { if (mine === asked) show(data); })
        .catch(function () {});
    }
    function later() {
      clearTimeout(timer);
      timer = setTimeout(ask, 250);
    }
    schedule.addEventListener("input", later);
    if (zone) zone.addEventListener("input", later);
    if (schedule.value) ask();
  });
})();
