// Polled fragments (a run's status block) are swapped whole by htmx every second or two.
// - A <details> the reader opened (the run's Steps table) would snap shut at the next poll:
//   open <details> with an id are remembered before a swap and opened again after it settles.
// - A live region that is replaced rather than changed is not read out by screen readers, so the
//   status line of a swapped block is copied into one lasting region, and only when it changes.
// - Ticked checkboxes of a polled list (the runs list's bulk actions) would be unticked by the next
//   poll: their ids are remembered before a poll's swap and ticked again after it (not after the
//   bulk action's own answer, which starts afresh). A "tick all" box (data-pick-all=NAME) ticks
//   every checkbox named NAME.
// - A step's log (.log-scroll) shows its newest lines: it starts scrolled to the bottom and stays
//   there across polls, unless the reader scrolled up to read; when the run's status line
//   changes (a step started or ended) the log panel is refreshed at once.
(function () {
  "use strict";
  let reopen = [];
  let announced = null;
  let logAtBottom = true;
  let ticked = [];

  function logScroller() {
    return document.querySelector(".log-scroll");
  }

  function scrollLogDown() {
    const log = logScroller();
    if (log && logAtBottom) log.scrollTop = log.scrollHeight;
  }

  function announcer() {
    let region = document.getElementById("live-announcer");
    if (!region) {
      region = document.createElement("p");
      region.id = "live-announcer";
      region.className = "sr-only";
      region.setAttribute("aria-live", "polite");
      document.body.appendChild(region);
    }
    return region;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    reopen = target ? Array.from(target.querySelectorAll("details[id][open]"), (d) => d.id) : [];
    const polled = event.detail.requestConfig && event.detail.requestConfig.verb === "get";
    ticked = target && polled ? Array.from(target.querySelectorAll("input[type=checkbox][id]:checked"), (c) => c.id) : [];
    const log = logScroller();
    if (log) logAtBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  });

  document.addEventListener("htmx:afterSettle", function () {
    reopen.forEach(function (id) {
      const details = document.getElementById(id);
      if (details) details.open = true;
    });
    reopen = [];
    ticked.forEach(function (id) {
      const box = document.getElementById(id);
      if (box) box.checked = true;
    });
    ticked = [];
    scrollLogDown();
    const status = document.querySelector("[data-announce]");
    if (!status) return;
    const text = status.textContent.replace(/\s+/g, " ").trim();
    if (announced !== null && text !== announced) {
      announcer().textContent = text;
      // A step started or ended: the log panel follows at once rather than at its next poll.
      const log = document.getElementById("step-log");
      if (log && window.htmx && log.getAttribute("hx-get")) window.htmx.trigger(log, "refresh");
    }
    announced = text;
  });

  document.addEventListener("change", function (event) {
    const all = event.target.closest && event.target.closest("[data-pick-all]");
    if (!all) return;
    document.querySelectorAll('input[type=checkbox][name="' + all.dataset.pickAll + '"]').forEach(function (box) {
      box.checked = all.checked;
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    scrollLogDown();
    const status = document.querySelector("[data-announce]");
    if (status) announced = status.textContent.replace(/\s+/g, " ").trim();
  });
})();
