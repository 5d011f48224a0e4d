// Solstice CI dashboard: the one script. The pages work without it; it adds the live log,
// log search and opening a permalinked line. Lines arrive as HTML the server escaped and
// coloured; nothing here builds markup from log text.
"use strict";

(function () {
  var MAX_LINES = 5000;    // lines kept on the page; older ones give way to a "show earlier" link
  var TRIM_SLACK = 1000;   // lines over the cap before a trim
  var APPLY_EVERY = 100;   // ms: lines arriving meanwhile go into the page together
  var FRAME_MS = 40;       // ms of inserting per frame before the page gets a turn
  var logBox = document.getElementById("log");

  function stepBox(step) {
    var box = logBox.querySelector('details.step[data-step="' + step + '"]');
    if (!box) {
      box = document.createElement("details");
      box.className = "step";
      box.dataset.step = String(step);
      box.id = "step-" + step;
      var summary = document.createElement("summary");
      summary.textContent = "Step " + (Number(step) + 1);
      var list = document.createElement("ol");
      list.className = "log";
      box.appendChild(summary);
      box.appendChild(list);
      logBox.appendChild(box);
    }
    return box;
  }

  function openLine(id) {
    var line = document.getElementById(id);
    if (!line) { return; }
    var box = line.closest("details");
    if (box) { box.open = true; }
    line.scrollIntoView({block: "center"});
  }

  function mergeContinuations(list) {
    // A chunk of a long line that arrived in a later batch: append it to the line before.
    var conts = list.querySelectorAll("li.cont");
    for (var i = 0; i < conts.length; i++) {
      var chunk = conts[i], before = chunk.previousElementSibling;
      if (!before) { continue; }
      var number = chunk.querySelector("a");
      if (number) { chunk.removeChild(number); }
      while (chunk.firstChild) { before.appendChild(chunk.firstChild); }
      chunk.remove();
    }
  }

  function trim(state) {
    // Counted as lines arrive (cheap); trimmed in chunks, each step's run of old lines
    // removed with one Range, so a fast log costs one big removal now and then.
    if (state.count <= MAX_LINES + TRIM_SLACK && !state.skipped) { return; }
    state.skipped = false;
    var lines = logBox.querySelectorAll("ol.log > li");
    var extra = lines.length - MAX_LINES;
    for (var i = 0; i < extra;) {
      var j = i;
      while (j + 1 < extra && lines[j + 1].parentNode === lines[i].parentNode) { j++; }
      var range = document.createRange();
      range.setStartBefore(lines[i]);
      range.setEndAfter(lines[j]);
      range.deleteContents();
      i = j + 1;
    }
    state.count = Math.min(lines.length, MAX_LINES);
    var first = logBox.querySelector("ol.log > li");
    var link = document.getElementById("log-earlier");
    if (!link) {
      link = document.createElement("p");
      link.id = "log-earlier";
      link.className = "earlier";
      link.appendChild(document.createElement("a"));
      logBox.parentNode.insertBefore(link, logBox);
    }
    var seq = first ? Number(first.id.slice(1)) : 1;
    var anchor = link.firstChild;
    anchor.textContent = "Show earlier lines (older lines left this page to keep it fast)";
    anchor.href = "/jobs/" + encodeURIComponent(state.job) + "?attempt=" + state.attempt + "&from=" + Math.max(1, seq - 5000);
  }

  function follow() {
    var status = document.getElementById("live-status");
    var state = {job: logBox.dataset.job, attempt: logBox.dataset.attempt, pending: [], scheduled: false,
                 count: logBox.querySelectorAll("ol.log > li").length};
    var url = "/jobs/" + encodeURIComponent(state.job) + "/live?attempt=" + state.attempt + "&after=" + logBox.dataset.last;
    var source = new EventSource(url);
    status.textContent = "following live";

    function catchUp() {
      // Far behind (a job printing faster than this page can show): the lines that would be
      // trimmed right after going in are never put in; the page restarts from the newest ones.
      var waiting = 0;
      state.pending.forEach(function (group) { waiting += group.lines; });
      if (waiting <= MAX_LINES) { return; }
      while (state.pending.length > 1 && waiting - state.pending[0].lines >= MAX_LINES) {
        waiting -= state.pending.shift().lines;
      }
      logBox.querySelectorAll("ol.log").forEach(function (list) { list.replaceChildren(); });
      state.count = 0;
      state.skipped = true;
    }

    function apply() {
      state.scheduled = false;
      catchUp();
      var started = performance.now();
      var nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
      // A frame's worth at a time (at least one batch): the page stays responsive however fast lines come.
      while (state.pending.length && (performance.now() - started < FRAME_MS)) {
        var group = state.pending.shift();
        var list = stepBox(group.step).querySelector("ol.log");
        list.insertAdjacentHTML("beforeend", group.html);
        state.count += group.lines;
        if (group.html.indexOf(" cont\"") !== -1 || group.html.indexOf("\"cont\"") !== -1) { mergeContinuations(list); }
        logBox.dataset.shown = group.last;
      }
      trim(state);
      if (nearBottom) { window.scrollTo(0, document.body.scrollHeight); }
      if (state.pending.length) { schedule(0); }
    }

    function schedule(delay) {
      if (state.scheduled) { return; }
      state.scheduled = true;
      setTimeout(function () { window.requestAnimationFrame(apply); }, delay);
    }

    source.addEventListener("lines", function (event) {
      JSON.parse(event.data).g.forEach(function (group) {
        state.pending.push({step: group[0], html: group[1], lines: group[1].split("<li ").length - 1,
                            last: event.lastEventId});
      });
      logBox.dataset.last = event.lastEventId;
      schedule(APPLY_EVERY);
    });
    source.addEventListener("state", function (event) {
      var data = JSON.parse(event.data);
      document.getElementById("job-head").innerHTML = data.head;
      data.steps.forEach(function (step) {
        var box = stepBox(step[0]);
        var was = box.dataset.state;
        box.dataset.state = step[1];
        box.querySelector("summary").innerHTML = step[2];
        if (step[1] === "running" && was !== "running") { box.open = true; }
        if (step[1] === "failed" && was !== "failed") { box.open = true; }
      });
      document.title = document.title.replace(/ - [a-z]+ - Solstice CI$/, " - " + data.state + " - Solstice CI");
    });
    source.addEventListener("notice", function (event) {
      status.textContent = JSON.parse(event.data).text;
    });
    source.addEventListener("end", function (event) {
      source.close();
      while (state.pending.length) { apply(); }
      status.textContent = "finished: " + JSON.parse(event.data).state;
      document.body.dataset.live = "";
    });
    source.onerror = function () {
      if (source.readyState !== EventSource.CLOSED) { status.textContent = "reconnecting..."; }
    };
    source.onopen = function () { status.textContent = "following live"; };
  }

  function search() {
    var form = document.getElementById("log-search");
    var input = document.getElementById("q");
    var count = document.getElementById("search-count");
    var hits = [], at = -1, timer = null;

    function find() {
      var term = input.value.trim().toLowerCase();
      hits.forEach(function (li) { li.classList.remove("hit", "hit-on"); });
      hits = [];
      at = -1;
      if (term) {
        var lines = logBox.querySelectorAll("ol.log > li");
        for (var i = 0; i < lines.length; i++) {
          if (lines[i].textContent.toLowerCase().indexOf(term) !== -1) {
            lines[i].classList.add("hit");
            hits.push(lines[i]);
          }
        }
        count.textContent = hits.length + (hits.length === 1 ? " line" : " lines");
      } else {
        count.textContent = "";
      }
    }

    function next() {
      if (!hits.length) { return; }
      if (at >= 0) { hits[at].classList.remove("hit-on"); }
      at = (at + 1) % hits.length;
      hits[at].classList.add("hit-on");
      openLine(hits[at].id);
      count.textContent = (at + 1) + " of " + hits.length;
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(find, 150);
    });
    form.addEventListener("submit", function (event) {
      // Searching the lines on the page; the form itself (no script) searches on the server.
      event.preventDefault();
      clearTimeout(timer);
      if (at === -1) { find(); }
      next();
    });
  }

  if (logBox) {
    if (/^#L[0-9]+$/.test(location.hash)) { openLine(location.hash.slice(1)); }
    window.addEventListener("hashchange", function () {
      if (/^#L[0-9]+$/.test(location.hash)) { openLine(location.hash.slice(1)); }
    });
    if (document.getElementById("log-search")) { search(); }
    if (logBox.dataset.follow === "1" && window.EventSource) { follow(); }
  }
})();
