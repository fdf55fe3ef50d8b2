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

  // The views hand templates already-dumped JSON strings, which json_script encodes once more
  // (escaping <, > and & so a prompt can never close the <script>): decode twice.
  function readJSON(id, fallback) {
    const el = document.getElementById(id);
    if (!el) return fallback;
    let value = JSON.parse(el.textContent);
    if (typeof value === "string") value = JSON.parse(value);
    return value;
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

  // A websocket that reconnects with backoff (0.5 s doubling to 5 s) until stop() is called.
  // The server re-sends the current state on every connect, so nothing is lost in between.
  // onConnection(open), when given, hears each open and each loss of the connection.
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
        onMessage(message);
      });
      socket.addEventListener("close", function () {
        if (stopped) return;
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
