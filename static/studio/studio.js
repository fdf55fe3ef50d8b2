/* Helpers every page shares: CSRF token, JSON data islands, JSON POSTs, a reconnecting websocket. */
(function () {
  "use strict";

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    // Fallback: any form on the page rendered {% csrf_token %}.
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // Server data for a page's script: JSON the view dumped, in a hidden element's data-json attribute
  // (escaped like any attribute; nothing inline ever runs, as the Content-Security-Policy requires).
  function readJSON(id, fallback) {
    const el = document.getElementById(id);
    if (!el || el.dataset.json === undefined) return fallback;
    return JSON.parse(el.dataset.json);
  }

  // POST a JSON body; resolves to {ok, status, data} and never rejects on HTTP errors.
  async function postJSON(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
        body: body === undefined ? "{}" : JSON.stringify(body),
      });
    } catch (err) {
      return { ok: false, status: 0, data: { error: "Could not reach the studio. Check your connection." } };
    }
    let data = {};
    try {
      data = await response.json();
    } catch (err) {
      data = {};
    }
    if (!response.ok && !data.error) {
      data.error = "The request failed (HTTP " + response.status + ").";
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  // The server closes a socket with this code when the user's access ended (removed from the project,
  // signed out by a password change elsewhere, deactivated), and sends "access.changed" when their role
  // changed. Either way the page may show what they may no longer do: say so, and offer a reload.
  const ACCESS_ENDED = 4403;

  function accessNotice(text) {
    let list = document.getElementById("access-notice");
    if (!list) {
      list = document.createElement("ul");
      list.id = "access-notice";
      list.className = "messages";
      list.setAttribute("role", "alert");
      (document.querySelector("main") || document.body).prepend(list);
    }
    const item = document.createElement("li");
    item.className = "message message-warning";
    const link = document.createElement("a");
    link.href = location.href;
    link.textContent = "Reload the page";
    item.append(text + " ", link, ".");
    list.replaceChildren(item);
  }

  // A websocket that reconnects with backoff (0.5 s doubling to 5 s) until stop() is called, or until the
  // server ends it because the user's access ended. The server re-sends the current state on every
  // connect, so nothing is lost in between. onConnection(open), when given, hears each open and each loss
  // of the connection.
  function openSocket(path, onMessage, onConnection) {
    const url = (location.protocol === "https:" ? "wss" : "ws") + "://" + location.host + path;
    let socket = null;
    let delay = 500;
    let stopped = false;
    let timer = null;

    function connect() {
      socket = new WebSocket(url);
      socket.addEventListener("open", function () {
        if (onConnection) onConnection(true);
      });
      socket.addEventListener("message", function (event) {
        delay = 500;
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        if (message.type === "access.changed") {
          accessNotice("Your role in this project is now " + message.role + ".");
        }
        onMessage(message);
      });
      socket.addEventListener("close", function (event) {
        if (stopped) return;
        if (event.code === ACCESS_ENDED) {
          stopped = true;
          accessNotice("You no longer have access to this page.");
          return;
        }
        if (onConnection) onConnection(false);
        timer = setTimeout(connect, delay);
        delay = Math.min(delay * 2, 5000);
      });
    }

    connect();
    return {
      stop: function () {
        stopped = true;
        clearTimeout(timer);
        if (socket && socket.readyState <= WebSocket.OPEN) socket.close();
      },
    };
  }

  window.Studio = { csrfToken: csrfToken, readJSON: readJSON, postJSON: postJSON, openSocket: openSocket };
})();
