// Live pages: WebSocket status, reconnection, value ages and staleness, device filter.
// The htmx WebSocket extension swaps the fragments; this file only adds what it lacks.
(function () {
  "use strict";

  // Back off to at most ~5 s, so a page is live again soon after a server restart.
  htmx.config.wsReconnectDelay = function (retries) {
    var ceiling = Math.min(5000, 250 * Math.pow(2, retries));
    return ceiling / 2 + Math.random() * ceiling / 2;
  };

  var RETRIED_BY_HTMX = [1006, 1011, 1012, 1013];
  // Refusals (dashboard/consumers.py), never retried: reconnecting would be refused again.
  var NOT_LOGGED_IN = 4001;
  var NO_ACCESS = 4003;
  // 4013: the server cut this page off for falling behind (a code daphne can send);
  // like any other close but a refusal it is retried below, and the page resyncs.

  function setPageStatus(state, text) {
    var el = document.getElementById("page-status");
    if (!el) return;
    el.className = "page-status state-" + state;
    el.textContent = "Live updates: " + text;
    document.body.dataset.live = state;
  }

  // Large frames arrive deflated (compressed once on the server for every page). The htmx
  // extension only swaps text, so a binary frame is held back, inflated, and replayed on
  // its socket as text; frames behind it wait their turn so that swaps keep their order.
  var originalCreateWebSocket = htmx.createWebSocket;
  htmx.createWebSocket = function (url) {
    var socket = originalCreateWebSocket(url);
    socket.binaryType = "arraybuffer";
    return socket;
  };
  var inflating = Promise.resolve();
  var waiting = 0;
  var replaying = false;

  function inflate(data) {
    var stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    return new Response(stream).text();
  }

  function replay(socket, text) {
    replaying = true;
    try {
      socket.dispatchEvent(new MessageEvent("message", { data: text }));
    } finally {
      replaying = false;
    }
  }

  document.addEventListener("htmx:wsOpen", function (event) {
    event.target.liveSocket = event.detail.event.target;
  });
  // A building's frames carry every tile of the building, and a page shows some of them
  // (one page of a large device table, one device): the rest are dropped here, as htmx
  // would log an error for each fragment whose target is not on the page.
  function swapTarget(fragment) {
    var swap = fragment.getAttribute("hx-swap-oob");
    var colon = swap.indexOf(":");
    return colon < 0 ? document.getElementById(fragment.id) : document.querySelector(swap.slice(colon + 1));
  }
  function onThisPage(text) {
    var template = document.createElement("template");
    template.innerHTML = text;
    var dropped = false;
    Array.prototype.slice.call(template.content.children).forEach(function (fragment) {
      if (fragment.hasAttribute("hx-swap-oob") && !swapTarget(fragment)) {
        fragment.remove();
        dropped = true;
      }
    });
    return dropped ? template.innerHTML : text;
  }

  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    var message = event.detail.message;
    if (replaying) return;
    event.preventDefault();
    var socket = event.target.liveSocket;
    if (typeof message === "string" && waiting === 0) {
      var text = message;
      try {
        text = onThisPage(message);
      } catch (error) {
        console.error("live update could not be filtered; applied as it came", error);
      }
      replay(socket, text);
      return;
    }
    waiting += 1;
    inflating = inflating
      .then(function () { return typeof message === "string" ? message : inflate(message); })
      .then(function (text) { replay(socket, onThisPage(text)); })
      .catch(function (error) {
        // A frame that cannot be applied leaves the page behind: start again from a snapshot.
        console.error("live update could not be applied", error);
        socket.close(4000, "resync");
      })
      .finally(function () { waiting -= 1; });
  });

  document.addEventListener("htmx:wsConnecting", function () {
    setPageStatus("connecting", "connecting…");
  });
  document.addEventListener("htmx:wsOpen", function () {
    setPageStatus("connected", "connected");
  });
  document.addEventListener("htmx:wsClose", function (event) {
    var code = event.detail.event.code;
    if (code === NOT_LOGGED_IN) {
      // The session ended: log in again, and come back to this page.
      setPageStatus("refused", "your session ended; opening the login page…");
      var login = document.body.dataset.loginUrl || "/accounts/login/";
      window.location.assign(
        login + "?next=" + encodeURIComponent(window.location.pathname + window.location.search)
      );
      return;
    }
    if (code === NO_ACCESS) {
      setPageStatus("refused", "refused (you no longer have access to this building).");
      return;
    }
    setPageStatus("reconnecting", "reconnecting…");
    if (RETRIED_BY_HTMX.indexOf(code) < 0) {
      // A server going away cleanly (1001) is retried here; htmx only retries abnormal closes.
      var wrapper = event.detail.socketWrapper;
      setTimeout(function () { wrapper.reconnect(); }, htmx.config.wsReconnectDelay(1));
    }
  });

  // htmx leaves 4xx/5xx answers unswapped by default; the action form's refusals
  // (403 not an operator, 422 invalid, 429 rate limit) are meant to be read in place.
  htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[2345]..", swap: true },
  ];

  // Action forms: the button says what it will do, and Level only shows for Dim. The words
  // are the server's (actions.WORDS), given to the page as JSON in #action-words.
  var words = null;
  function actionWords() {
    if (!words) {
      var source = document.getElementById("action-words");
      words = source ? JSON.parse(source.textContent) : { verbs: {}, none: "" };
    }
    return words;
  }
  function describeAction(form) {
    var action = form.querySelector("select[name$='action']");
    var level = form.querySelector("input[name$='level']");
    var button = form.querySelector("button.send");
    if (!action || !level || !button || form.querySelector(".confirm")) return;
    var values = { target: form.dataset.targetName, level: level.value || "…" };
    var known = actionWords();
    var pattern = Object.prototype.hasOwnProperty.call(known.verbs, action.value)
      ? known.verbs[action.value]
      : known.none;
    if (pattern) {
      // One pass, by function: a name holding "{level}" or "$&" stays as it is.
      button.textContent = pattern.replace(/\{(target|level)\}/g, function (_, key) {
        return values[key];
      });
    }
    form.querySelector(".field-level").hidden = action.value !== "dim";
  }
  document.addEventListener("input", function (event) {
    var form = event.target.closest && event.target.closest("form.action-form");
    if (form) describeAction(form);
  });
  document.addEventListener("htmx:load", function (event) {
    var root = event.detail.elt;
    if (root.matches && root.matches("form.action-form")) describeAction(root);
    if (root.querySelectorAll) root.querySelectorAll("form.action-form").forEach(describeAction);
  });

  // The alarm banner: dismissable, and a browser notification for people who opted in.
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target.matches && target.matches("#alarm-banner .dismiss")) {
      document.getElementById("alarm-banner").hidden = true;
    }
    if (target.id === "notify-opt-in" && "Notification" in window) {
      Notification.requestPermission().then(function () { target.hidden = true; });
    }
  });
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var banner = event.target;
    if (banner.id !== "alarm-banner" || banner.hidden) return;
    if ("Notification" in window && Notification.permission === "granted") {
      var text = banner.cloneNode(true);
      text.querySelectorAll("button").forEach(function (b) { b.remove(); });
      new Notification("New fault alarm", { body: text.textContent.trim() });
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var optIn = document.getElementById("notify-opt-in");
    if (optIn && "Notification" in window) optIn.hidden = Notification.permission !== "default";
  });

  // Ages: "12 s ago" next to each time, and "stale" on values older than the setting.
  function describeAge(seconds) {
    if (seconds < 60) return Math.max(0, Math.round(seconds)) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }

  function refreshAges() {
    var root = document.querySelector("[data-stale-after]");
    var staleAfter = root ? Number(root.dataset.staleAfter) : Infinity;
    var now = Date.now();
    document.querySelectorAll("time.age[datetime]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      var seconds = (now - at) / 1000;
      if (!el.title) el.title = el.textContent;
      el.textContent = describeAge(seconds);
      var holder = el.closest(".meta, .headcount");
      if (holder) holder.classList.toggle("stale", seconds > staleAfter);
    });
  }

  // Device filter: instant, and kept in the address so a wall screen can bookmark it.
  function filterDevices() {
    var form = document.getElementById("device-filter");
    if (!form || "paged" in form.dataset) return;
    var space = form.elements.space.value;
    var text = form.elements.q.value.trim().toLowerCase();
    var shown = 0;
    var rows = document.querySelectorAll(".device-table tbody tr[data-name]");
    rows.forEach(function (row) {
      // A row lists its spaces and every space around them: a floor keeps its rooms' devices.
      var match = (!space || (" " + row.dataset.spaces + " ").indexOf(" " + space + " ") >= 0) &&
        (!text || row.dataset.name.indexOf(text) >= 0);
      row.hidden = !match;
      if (match) shown += 1;
    });
    document.getElementById("device-count").textContent = shown + " of " + rows.length + " shown";
    var params = new URLSearchParams(window.location.search);
    if (space) { params.set("space", space); } else { params.delete("space"); }
    if (text) { params.set("q", form.elements.q.value.trim()); } else { params.delete("q"); }
    var query = params.toString();
    history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("device-filter");
    if (form && "paged" in form.dataset) {
      // A large building's devices come a page at a time: the server filters them.
      form.elements.space.addEventListener("change", function () { form.requestSubmit(); });
    } else if (form) {
      form.addEventListener("input", filterDevices);
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        filterDevices();
      });
      filterDevices();
    }
    refreshAges();
    setInterval(refreshAges, 5000);
  });
  document.addEventListener("htmx:wsAfterMessage", function (event) {
    // Acknowledge each applied frame: the server cuts off a page that stops keeping up,
    // and this page then reconnects and catches up from a snapshot.
    event.detail.socketWrapper.send("ack");
    refreshAges();
  });
})();
