"use strict";
// The wall's socket, decoding and drawing, in a worker: the page's main thread does nothing
// per frame (a Blob and an ack per frame on the main thread took a third of its time with 16
// cameras, and delayed every other tile). Each tile's canvas is handed over here
// (transferControlToOffscreen) and drawn with its bitmaprenderer context: the decoded bitmap is
// taken over without a copy, and there is no object URL to revoke.
//
// Protocol (docs/web.md): the viewer sends each wanted camera's newest frame once the last one
// was acked. A frame is acked when it is taken for decoding, and one more may wait while a
// camera's frame decodes: at most two frames per camera here, never a backlog.
//
// page -> worker: {connect: url} {tile: camera, canvas} {forget: camera} {want: "want A B"}
// worker -> page: {status: text} {stats: {camera: {frames, fps, ageMs}}} {closed: reason}

const tiles = new Map();
const utf8 = new TextDecoder();
let socket = null;
let want = "want";
let painting = false;

onmessage = (e) => {
  const m = e.data;
  if (m.connect) connect(m.connect);
  if (m.tile) {
    tiles.set(m.tile, { camera: m.tile, canvas: m.canvas, context: m.canvas.getContext("bitmaprenderer"),
      decoding: false, pending: null, next: null, nextAgeMs: null, frames: 0, draws: [], ageMs: null });
  }
  if (m.forget) tiles.delete(m.forget);
  if (m.want !== undefined && m.want !== want) {
    want = m.want;
    send(want);
  }
};

function send(text) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(text);
}

function connect(url) {
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => send(want);
  socket.onmessage = (e) => typeof e.data === "string" ? postMessage({ status: e.data }) : onFrame(e.data);
  socket.onclose = (e) => {
    postMessage({ closed: e.reason || "closed" });
    for (const t of tiles.values()) t.pending = null;
    setTimeout(() => connect(url), 1000);
  };
}

function onFrame(buffer) {
  const n = new DataView(buffer).getUint16(0);
  const head = JSON.parse(utf8.decode(new Uint8Array(buffer, 2, n)));
  const frame = { head, jpeg: new Uint8Array(buffer, 2 + n), arrived: performance.now() };
  const t = tiles.get(head.camera);
  if (!t) send("ack " + head.camera);  // a tile gone meanwhile: nothing to draw
  else if (t.decoding) t.pending = frame;  // at most one waits (the next is sent after its ack)
  else decode(t, frame);
}

async function decode(t, frame) {
  t.decoding = true;
  send("ack " + t.camera);  // taken: the next frame of this camera may come while this one decodes
  try {
    const bitmap = await createImageBitmap(new Blob([frame.jpeg], { type: "image/jpeg" }));
    if (tiles.get(t.camera) === t) draw(t, bitmap, frame.head.age_ms + performance.now() - frame.arrived);
    else bitmap.close();
  } catch (err) {
    console.warn("camera " + t.camera + ": a frame that does not decode", err);
  }
  t.decoding = false;
  const next = t.pending;
  t.pending = null;
  if (next) decode(t, next);
}

function draw(t, bitmap, ageMs) {  // on the next animation frame, all tiles together
  if (t.next) t.next.close();  // not shown yet and already old: skipped
  t.next = bitmap;
  t.nextAgeMs = ageMs;
  if (!painting) {
    painting = true;
    requestAnimationFrame(paint);
  }
}

function paint() {
  painting = false;
  for (const t of tiles.values()) {
    const bitmap = t.next;
    if (!bitmap) continue;
    t.next = null;
    if (t.canvas.width !== bitmap.width || t.canvas.height !== bitmap.height) {
      t.canvas.width = bitmap.width;
      t.canvas.height = bitmap.height;
    }
    t.context.transferFromImageBitmap(bitmap);
    t.frames += 1;
    t.ageMs = t.nextAgeMs;
    t.draws.push(performance.now());
  }
}

setInterval(() => {  // what the captions show, four times a second
  const now = performance.now();
  const stats = {};
  for (const t of tiles.values()) {
    while (t.draws.length && t.draws[0] < now - 2000) t.draws.shift();
    stats[t.camera] = { frames: t.frames, fps: t.draws.length / 2, ageMs: t.ageMs };
  }
  postMessage({ stats });
}, 250);
