"use strict";
// The wall's socket, decoding and drawing, in a worker: the page's main thread does nothing
// per frame (a Blob and an ack per frame on the main thread took a third of its time with 16
// cameras, and delayed every other tile).
//
// Every tile is drawn into ONE canvas (the page's, handed over with transferControlToOffscreen),
// each picture in the place of its tile's screen, which the page says ({places}); new pictures
// are drawn together on the next animation frame. Why one canvas: the browser composites one
// layer per animation frame instead of one per camera. And each JPEG is decoded at about the
// size it is shown (decodeJpeg), so a wall of small tiles decodes small pictures. Headless
// Chromium without a GPU spent ~9 ms of CPU per 640x360 frame drawn with a canvas and a full
// decode per tile, and ~5.5 ms so (docs/web.md).
//
// Protocol (docs/web.md): the viewer sends each wanted camera's newest frame once the last one
// was acked. A frame is acked when it is taken for decoding, and one more may wait while a
// camera's frame decodes: at most two frames per camera here, never a backlog.
//
// page -> worker: {connect: url} {canvas} {tile: camera} {forget: camera} {want: "want A B"}
//                 {places: {width, height, dpr, rects: {camera: [x, y, w, h]}}} (CSS pixels)
// worker -> page: {status: text} {stats: {camera: {frames, fps, ageMs, size, place}}} {closed: reason}

const BACKGROUND = "#181818";  // the page's
const SCREEN = "#111";  // a tile's screen before its first picture, and around one not 16:9
const tiles = new Map();
const utf8 = new TextDecoder();
let socket = null;
let want = "want";
let canvas = null;
let context = null;
let places = { width: 0, height: 0, dpr: 1, rects: {} };
let moved = false;  // the places changed: the whole canvas is drawn again
let painting = false;

onmessage = (e) => {
  const m = e.data;
  if (m.connect) connect(m.connect);
  if (m.canvas) {
    canvas = m.canvas;
    context = canvas.getContext("2d", { alpha: false });
  }
  if (m.tile) {
    tiles.set(m.tile, { camera: m.tile, place: null, decoding: false, pending: null, next: null, shown: null,
      frames: 0, draws: [], ageMs: null });
  }
  if (m.forget) forget(m.forget);
  if (m.places) {
    places = m.places;
    moved = true;
    paintSoon();
  }
  if (m.want !== undefined && m.want !== want) {
    want = m.want;
    send(want);
  }
};

function forget(camera) {
  const t = tiles.get(camera);
  if (!t) return;
  for (const picture of [t.next, t.shown]) if (picture) picture.image.close();
  tiles.delete(camera);
  moved = true;  // its place is free
  paintSoon();
}

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

// ---------------------------------------------------------------- where a picture goes

function placeOf(camera) {  // the tile's screen in canvas pixels, or null when it is not on screen
  const r = places.rects[camera];
  if (!r) return null;
  const d = places.dpr;
  const x = Math.round(r[0] * d), y = Math.round(r[1] * d);
  return { x, y, w: Math.round((r[0] + r[2]) * d) - x, h: Math.round((r[1] + r[3]) * d) - y };
}

function fit(place, width, height) {  // the largest box of the picture's shape in the place, centred
  const scale = Math.min(place.w / width, place.h / height);
  const w = Math.max(1, Math.round(width * scale)), h = Math.max(1, Math.round(height * scale));
  return { x: place.x + ((place.w - w) >> 1), y: place.y + ((place.h - h) >> 1), w, h };
}

// ---------------------------------------------------------------- decoding and drawing

async function decode(t, frame) {
  t.decoding = true;
  send("ack " + t.camera);  // taken: the next frame of this camera may come while this one decodes
  try {
    const { width, height } = frame.head;
    const place = placeOf(t.camera);
    const box = place && width > 0 && height > 0 ? fit(place, width, height) : null;
    const image = await decodeJpeg(frame.jpeg, box && box.w < width ? box : null);
    const picture = { image, width: width || image.displayWidth || image.width,
      height: height || image.displayHeight || image.height,
      ageMs: frame.head.age_ms + performance.now() - frame.arrived };
    if (tiles.get(t.camera) === t) show(t, picture);
    else image.close();
  } catch (err) {
    console.warn("camera " + t.camera + ": a frame that does not decode", err);
  }
  t.decoding = false;
  const next = t.pending;
  t.pending = null;
  if (next) decode(t, next);
}

async function decodeJpeg(jpeg, size) {
  // A JPEG to something drawImage draws, at about `size` when given (never larger than it came).
  // WebCodecs' ImageDecoder reads the bytes where they are and decodes to the size asked (the
  // JPEG's own scaling), to a YUV frame that drawImage converts as it scales; createImageBitmap
  // needs a Blob, which Chromium copies to its browser process and back, and decodes in full
  // first. Where there is no ImageDecoder (Safari), the Blob.
  if (typeof ImageDecoder === "function") {
    const init = { data: jpeg, type: "image/jpeg" };
    if (size) Object.assign(init, { desiredWidth: size.w, desiredHeight: size.h });
    const decoder = new ImageDecoder(init);
    try {
      return (await decoder.decode()).image;
    } finally {
      decoder.close();
    }
  }
  const resize = size ? { resizeWidth: size.w, resizeHeight: size.h, resizeQuality: "low" } : {};
  return createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }), resize);
}

function show(t, picture) {  // on the next animation frame, all tiles together
  if (t.next) t.next.image.close();  // not shown yet and already old: skipped
  t.next = picture;
  paintSoon();
}

function paintSoon() {
  if (!painting && context) {
    painting = true;
    requestAnimationFrame(paint);
  }
}

function paint() {
  painting = false;
  if (moved) {
    moved = false;
    const width = Math.round(places.width * places.dpr), height = Math.round(places.height * places.dpr);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;  // clears it
      canvas.height = height;
    }
    context.fillStyle = BACKGROUND;
    context.fillRect(0, 0, width, height);
    for (const t of tiles.values()) {
      t.place = placeOf(t.camera);
      if (!t.place) continue;
      context.fillStyle = SCREEN;
      context.fillRect(t.place.x, t.place.y, t.place.w, t.place.h);
      if (t.shown && !t.next) draw(t, t.shown);
    }
  }
  const now = performance.now();
  for (const t of tiles.values()) {
    if (!t.next) continue;
    if (t.shown) t.shown.image.close();
    t.shown = t.next;
    t.next = null;
    if (!t.place) continue;  // not on screen (the page wants it no more)
    draw(t, t.shown);
    t.frames += 1;
    t.ageMs = t.shown.ageMs;
    t.draws.push(now);
  }
}

function draw(t, picture) {
  const box = fit(t.place, picture.width, picture.height);
  if (box.w !== t.place.w || box.h !== t.place.h) {  // not the screen's shape: bars around it
    context.fillStyle = SCREEN;
    context.fillRect(t.place.x, t.place.y, t.place.w, t.place.h);
  }
  context.drawImage(picture.image, box.x, box.y, box.w, box.h);
}

setInterval(() => {  // what the captions show, twice a second
  const now = performance.now();
  const stats = {};
  for (const t of tiles.values()) {
    while (t.draws.length && t.draws[0] < now - 2000) t.draws.shift();
    const size = t.shown ? [t.shown.width, t.shown.height] : null;
    const d = places.dpr, p = t.place;  // where its pictures are drawn now, in CSS pixels
    const place = p && [p.x / d, p.y / d, p.w / d, p.h / d];
    stats[t.camera] = { frames: t.frames, fps: t.draws.length / 2, ageMs: t.ageMs, size, place };
  }
  postMessage({ stats });
}, 500);
