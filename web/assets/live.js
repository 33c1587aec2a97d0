// live.js: plays a camera's live WebSocket (/v1/cameras/NAME/live) in a
// <video> through Media Source Extensions. The socket sends a JSON "init"
// message naming the codec, the init segment, then fMP4 fragments that each
// start on a keyframe; the player appends them, keeps close to the live
// edge, jumps over gaps, trims old buffer and reconnects with backoff.
"use strict";

window.edgedPlayLive = function playLive(video, name, onState) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/v1/cameras/${encodeURIComponent(name)}/live`;
  const say = (s) => { if (onState) onState(s); };
  let socket = null, mediaSource = null, buffer = null, mime = null;
  let queue = [], stopped = false, attempt = 0;

  function setUp(message) {
    if (!window.MediaSource || !MediaSource.isTypeSupported(message.mime)) {
      say(`this browser cannot play ${message.codec}`);
      return;
    }
    if (buffer && message.mime === mime) return; // same codec: the init segment appends as usual
    mime = message.mime;
    queue = [];
    buffer = null;
    mediaSource = new MediaSource();
    video.src = URL.createObjectURL(mediaSource);
    mediaSource.addEventListener("sourceopen", () => {
      buffer = mediaSource.addSourceBuffer(mime);
      buffer.mode = "segments"; // fragments carry their own (wall-clock) times
      buffer.addEventListener("updateend", () => { follow(); pump(); });
      pump();
    }, { once: true });
  }

  function pump() {
    if (!buffer || buffer.updating || queue.length === 0) return;
    try {
      buffer.appendBuffer(queue.shift());
    } catch (e) {
      say(e.name === "QuotaExceededError" ? "buffer full, skipping" : e.message);
    }
  }

  // Stay near the live edge: a viewer behind by more than a few seconds
  // (a stalled tab, a gap in the recording) jumps to the newest fragment.
  function follow() {
    const ranges = video.buffered;
    if (!ranges.length) return;
    const start = ranges.start(ranges.length - 1), end = ranges.end(ranges.length - 1);
    if (video.currentTime < start || end - video.currentTime > 6) {
      video.currentTime = Math.max(start, end - 2.5);
    }
    if (video.paused) video.play().catch(() => {});
    say("live");
    if (!buffer.updating && video.currentTime - ranges.start(0) > 40) {
      buffer.remove(0, video.currentTime - 20);
    }
  }

  function connect() {
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    say("connecting…");
    socket.onopen = () => { attempt = 0; };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        const message = JSON.parse(event.data);
        if (message.type === "init") setUp(message);
        return;
      }
      queue.push(event.data);
      pump();
    };
    socket.onclose = (event) => {
      if (stopped) return;
      if (event.code === 4404) { say("no such camera"); return; }
      say("reconnecting…");
      setTimeout(connect, Math.min(10000, 500 * 2 ** attempt++));
    };
  }

  video.muted = true;
  video.playsInline = true;
  connect();
  return { stop() { stopped = true; if (socket) socket.close(); } };
};
