// Linebox portal: every change goes through the JSON API with the session's CSRF token;
// live updates arrive as server-sent events. No build step, no third-party code.
"use strict";
(function () {
  const csrfMeta = document.querySelector('meta[name="csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const page = document.body.dataset.page;

  async function api(method, url, body) {
    const opts = { method: method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body instanceof FormData || body instanceof Blob) opts.body = body;
    else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    const r = await fetch(url, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (r.status === 401 && page !== "login") { location.href = "/login"; }
    if (!r.ok) throw new Error((data && data.error) || ("HTTP " + r.status));
    return data;
  }

  function notice(text, bad) {
    const n = document.getElementById("notice");
    if (!n) return;
    n.textContent = text; n.hidden = false; n.className = "notice" + (bad ? " bad" : "");
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---------------------------------------------------------------- login / logout
  function loginForm(id) {
    const f = document.getElementById(id);
    if (!f) return;
    f.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const body = Object.fromEntries(new FormData(f).entries());
      const err = document.getElementById("login-error");
      try {
        await api("POST", "/api/v1/login", body);
        location.href = "/";
      } catch (e) {
        err.textContent = e.message === "locked" ? "This box is locked after too many wrong PINs. Try again later."
          : e.message === "rate_limited" ? "Too many attempts from here. Wait a minute." : "Wrong box number or PIN.";
        if (body.user) err.textContent = e.message === "rate_limited" ? "Too many attempts from here. Wait a minute."
          : e.message === "locked" ? "Administrator login is locked after too many wrong passwords. Try again later." : "Wrong password.";
        err.hidden = false;
      }
    });
  }
  loginForm("login-box");
  loginForm("login-admin");
  const logout = document.getElementById("logout");
  if (logout) logout.addEventListener("click", async function () {
    try { await api("POST", "/api/v1/logout"); } finally { location.href = "/login"; }
  });

  // ---------------------------------------------------------------- live events
  function follow(handlers) {
    if (!window.EventSource) return;
    const es = new EventSource("/api/v1/events");
    for (const kind in handlers) es.addEventListener(kind, function (ev) { handlers[kind](JSON.parse(ev.data)); });
  }

  function debounce(fn, ms) {
    let t = null;
    return function () { clearTimeout(t); t = setTimeout(fn, ms); };
  }

  function fmtTime(iso) { return iso ? iso.slice(0, 16).replace("T", " ") : "?"; }
  function fmtDur(s) { if (typeof s !== "number") return "–"; s = Math.round(s); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
  const OUTCOME = { message: "message in box {box}", hung_up: "hung up before the beep (box {box})", missed: "missed",
    login: "owner login to box {box}", blocked: "blocked" };
  function fmtOutcome(c) {
    let t = OUTCOME[c.outcome] || c.outcome;
    if (c.outcome === "hung_up" && c.box === null) t = "hung up";
    return t.replace("{box}", c.box);
  }

  async function refreshLines() {
    const lines = await api("GET", "/api/v1/lines");
    const tb = document.getElementById("lines");
    tb.replaceChildren(...lines.map(function (ln) {
      const tr = el("tr", { id: "line-" + ln.id });
      tr.append(el("td", { "data-label": "Line" }, "Line " + ln.id));
      const st = el("td", { "data-label": "State" });
      st.append(el("span", { class: "state state-" + ln.state }, ln.state));
      if (ln.fault) st.append(" ", el("small", {}, ln.fault));
      tr.append(st, el("td", { "data-label": "Caller", class: "caller" }, [ln.caller_number, ln.caller_name].filter(Boolean).join(" ")),
        el("td", { "data-label": "Answering" }, ln.answering ? "after " + ln.rings + " rings" : "off"));
      return tr;
    }));
  }
  async function refreshBoxes() {
    const boxes = await api("GET", "/api/v1/boxes");
    for (const b of boxes) {
      const a = document.getElementById("box-" + b.number);
      if (!a) continue;
      a.classList.toggle("full", b.full);
      a.querySelector(".counts").textContent = b.new + " new · " + b.saved + " saved" + (b.full ? " · full" : "");
    }
  }
  async function refreshCalls() {
    const calls = await api("GET", "/api/v1/calls");
    const tb = document.getElementById("calls");
    tb.replaceChildren(...calls.slice(0, 200).map(function (c) {
      const tr = el("tr");
      tr.append(el("td", { "data-label": "Time" }, fmtTime(c.t)),
        el("td", { "data-label": "Caller" }, (c.caller_number || "unknown") + " " + (c.caller_name || "")),
        el("td", { "data-label": "Line" }, c.line !== null ? String(c.line) : "ext " + c.extension),
        el("td", { "data-label": "Length" }, fmtDur(c.seconds)),
        el("td", { "data-label": "Outcome" }, fmtOutcome(c)));
      return tr;
    }));
  }

  if (page === "dashboard") {
    const lines = debounce(refreshLines, 50), boxes = debounce(refreshBoxes, 100), calls = debounce(refreshCalls, 100);
    follow({ line: lines, box: boxes, call: calls });
  }

  // ---------------------------------------------------------------- a box's messages
  if (page === "box") {
    const box = document.body.dataset.box;
    document.querySelectorAll("li.msg [data-act]").forEach(function (b) {
      b.addEventListener("click", async function () {
        const id = b.closest("li.msg").dataset.id, act = b.dataset.act;
        if (act === "purge" && !confirm("Delete this message for good?")) return;
        try {
          if (act === "delete") await api("DELETE", "/api/v1/messages/" + id);
          else await api("POST", "/api/v1/messages/" + id + "/" + act);
          location.reload();
        } catch (e) { notice(e.message, true); }
      });
    });
    // Playing a new message marks it heard, as listening by phone does.
    document.querySelectorAll("li.msg.state-new audio").forEach(function (a) {
      a.addEventListener("ended", function () {
        const id = a.closest("li.msg").dataset.id;
        api("POST", "/api/v1/messages/" + id + "/heard").catch(function () {});
      }, { once: true });
    });
    const playing = function () { return Array.from(document.querySelectorAll("audio")).some(function (a) { return !a.paused; }); };
    follow({ box: function (ev) {
      if (ev.box !== box) return;
      if (playing()) notice("This box changed: reload the page to see it.");
      else location.reload();
    } });
    const up = document.getElementById("greeting-upload");
    up.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      try {
        const r = await api("PUT", "/api/v1/boxes/" + box + "/greeting", new FormData(up));
        notice("Greeting set (" + r.seconds + " s).");
        setTimeout(function () { location.reload(); }, 600);
      } catch (e) { notice(e.message, true); }
    });
    document.getElementById("greeting-clear").addEventListener("click", async function () {
      try { await api("DELETE", "/api/v1/boxes/" + box + "/greeting"); location.reload(); } catch (e) { notice(e.message, true); }
    });
    recorder(document.getElementById("greeting-record"), box, "unavailable");
    // The temporary greeting and the name recording: the same three actions, ?kind=.
    document.querySelectorAll("section.greeting-kind").forEach(function (sec) {
      const kind = sec.dataset.kind;
      const url = "/api/v1/boxes/" + box + "/greeting?kind=" + kind;
      const form = sec.querySelector("form.kind-upload");
      form.addEventListener("submit", async function (ev) {
        ev.preventDefault();
        try {
          const r = await api("PUT", url, new FormData(form));
          notice("Uploaded (" + r.seconds + " s).");
          setTimeout(function () { location.reload(); }, 600);
        } catch (e) { notice(e.message, true); }
      });
      sec.querySelector(".kind-clear").addEventListener("click", async function () {
        try { await api("DELETE", url); location.reload(); } catch (e) { notice(e.message, true); }
      });
      recorder(sec.querySelector(".kind-record"), box, kind);
    });
  }

  // Records from the microphone into 16-bit PCM WAV (the appliance resamples it).
  function recorder(button, box, kind) {
    let ctx = null, stream = null, node = null, chunks = [];
    button.addEventListener("click", async function () {
      if (ctx) { return stop(); }
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { notice("This browser cannot record here (it needs https).", true); return; }
      try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (e) { notice("No microphone: " + e.message, true); return; }
      ctx = new AudioContext();
      const src = ctx.createMediaStreamSource(stream);
      node = ctx.createScriptProcessor(4096, 1, 1);
      chunks = [];
      node.onaudioprocess = function (e) { chunks.push(new Float32Array(e.inputBuffer.getChannelData(0))); };
      src.connect(node); node.connect(ctx.destination);
      button.textContent = "Stop and upload";
    });
    async function stop() {
      const rate = ctx.sampleRate;
      node.disconnect(); stream.getTracks().forEach(function (t) { t.stop(); }); await ctx.close(); ctx = null;
      button.textContent = "Record in the browser";
      const n = chunks.reduce(function (s, c) { return s + c.length; }, 0);
      const buf = new DataView(new ArrayBuffer(44 + 2 * n));
      const w = function (o, s) { for (let i = 0; i < s.length; i++) buf.setUint8(o + i, s.charCodeAt(i)); };
      w(0, "RIFF"); buf.setUint32(4, 36 + 2 * n, true); w(8, "WAVEfmt "); buf.setUint32(16, 16, true);
      buf.setUint16(20, 1, true); buf.setUint16(22, 1, true); buf.setUint32(24, rate, true); buf.setUint32(28, rate * 2, true);
      buf.setUint16(32, 2, true); buf.setUint16(34, 16, true); w(36, "data"); buf.setUint32(40, 2 * n, true);
      let o = 44;
      for (const c of chunks) for (let i = 0; i < c.length; i++, o += 2) buf.setInt16(o, Math.max(-1, Math.min(1, c[i])) * 32767, true);
      try {
        const r = await api("PUT", "/api/v1/boxes/" + box + "/greeting?kind=" + kind, new Blob([buf], { type: "audio/wav" }));
        notice("Greeting recorded (" + r.seconds + " s).");
        setTimeout(function () { location.reload(); }, 600);
      } catch (e) { notice(e.message, true); }
    }
  }

  // ---------------------------------------------------------------- settings
  if (page === "settings") {
    document.querySelectorAll("form.settings").forEach(function (f) {
      f.addEventListener("submit", async function (ev) {
        ev.preventDefault();
        const body = {};
        for (const input of f.elements) {
          if (!input.name) continue;
          if (input.type === "checkbox") body[input.name] = input.checked;
          else if (input.type === "number") { if (input.value !== "") body[input.name] = Number(input.value); }
          else if (input.name === "options") {
            body.options = {};
            input.value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean).forEach(function (s) {
              const kv = s.split("="); body.options[kv[0].trim()] = (kv[1] || "").trim();
            });
          } else if (input.name === "block") {
            body.block = input.value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean);
          } else if (input.name === "pin" && input.value === "") { /* unchanged */ }
          else body[input.name] = input.value;
        }
        try {
          await api("POST", f.dataset.url, body);
          notice("Saved.");
          if (f.dataset.reload) setTimeout(function () { location.reload(); }, 500);
        } catch (e) { notice(e.message, true); }
      });
    });
    document.querySelectorAll("[data-remove-box]").forEach(function (b) {
      b.addEventListener("click", async function () {
        if (!confirm("Remove box " + b.dataset.removeBox + " from the configuration?")) return;
        try { await api("DELETE", "/api/v1/boxes/" + b.dataset.removeBox); location.reload(); } catch (e) { notice(e.message, true); }
      });
    });
  }
})();
