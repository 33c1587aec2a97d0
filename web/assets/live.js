// live.js: plays a camera's live WebSocket (/v1/cameras/NAME/live) in a
// <video> through Media Source Extensions. The socket sends a JSON "init"
// message naming the codec, the init segment, then fMP4 fragments that each
// start on a keyframe (or, with lowLatency, one chunk per frame); the player
// appends them, keeps close to the live edge, jumps over gaps, trims old
// buffer and reconnects with backoff.
//
// With lowLatency, window.edgedLiveLatency collects, per appended chunk, how
// long after the frame entered edged's pipeline it was appended here (ms):
// the decode time of edged's fragments is Unix time in 90 kHz units.
"use strict";

window.edgedLiveLatency = [];

// The decode time (tfdt) of a moof + mdat, in ms, or null.
function decodeTimeMs(bytes) {
  const b = new Uint8Array(bytes);
  for (let i = 4; i + 16 <= b.length && i < 512; i++) {
    if (b[i] === 0x74 && b[i + 1] === 0x66 && b[i + 2] === 0x64 && b[i + 3] === 0x74) {
      const view = new DataView(bytes, i + 4);
      const t = view.getUint8(0) === 1
        ? view.getUint32(4) * 4294967296 + view.getUint32(8) : view.getUint32(4);
      return t / 90;
    }
  }
  return null;
}

window.edgedPlayLive = function playLive(video, name, onState, options = {}) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const low = Boolean(options.lowLatency);
  const url = `${scheme}//${location.host}/v1/cameras/${encodeURIComponent(name)}/live` +
              (low ? "?latency=low" : "");
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
    const data = queue.shift();
    try {
      buffer.appendBuffer(data);
      if (low && data.byteLength > 8 && new DataView(data).getUint32(4) === 0x6d6f6f66) {
        const t = decodeTimeMs(data);
        if (t !== null && window.edgedLiveLatency.length < 100000) {
          window.edgedLiveLatency.push(Date.now() - t);
        }
      }
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
    const lag = end - video.currentTime;
    if (low) {
      // A frame or two behind the camera; catch up gently, jump when far.
      if (video.currentTime < start || lag > 1.0) video.currentTime = Math.max(start, end - 0.1);
      video.playbackRate = lag > 0.3 ? 1.1 : 1.0;
    } else if (video.currentTime < start || lag > 6) {
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
