// My photos, live: a new photo of you appears here soon after it is processed, without a reload,
// and the notice above the gallery says how many arrived.
//
// Conditional polling of GET /api/my-photos/ (the same ?event= as the page). The page carries the
// ETag of the answer its own photos agree with (#live-notice), so while nothing changes every
// poll is a 304 that the server answers from its cache. One request every 5-9 s, a new random
// wait each time so that many open galleries never ask in step (9 s at most, so that a photo
// shows within 10 s of being processed); none while the tab is hidden; after an error, longer
// and longer waits, never shorter than the server's Retry-After.
//
// The new photos' tiles are taken from the page itself, fetched and parsed, so they look and
// behave exactly like the others (the lightbox, selection and "Not me" in gallery.js find tiles
// when they are used, not when the page loads).
(() => {
  "use strict";
  const region = document.getElementById("live-notice");
  if (!region || !region.dataset.liveUrl || !window.fetch || !window.DOMParser) return;

  const POLL_MS = 5000; // never sooner than this after the last request
  const SPREAD_MS = 4000; // and up to this much later, at random
  const LONGEST_WAIT_MS = 5 * 60 * 1000;
  const TILE = ".tile[data-photo-id]";
  const NEW_RING = "#e0a100"; // new tiles wear it for a minute, or until "Show" was used
  const MARKED_MS = 60 * 1000;
  const url = region.dataset.liveUrl;
  let etag = region.dataset.liveEtag || "";
  let count = Number(region.dataset.liveCount) || 0;

  const tiles = (root = document) => Array.from(root.querySelectorAll(TILE));
  // Every photo this page has had: those of the answer it was built with, and its own tiles.
  // A photo that leaves (said "not me") is still known, so it never comes back as new.
  const known = new Set((region.dataset.liveIds || "").split(" ").filter(Boolean));
  tiles().forEach((tile) => known.add(tile.dataset.photoId));

  let timer = null;
  let busy = false;
  let stopped = false;
  let failures = 0;
  let lastAsked = 0;
  let notBefore = 0; // no request before this moment: a Retry-After, or a back-off
  let unseenCount = 0; // announced, and not shown yet
  let unseenTiles = [];

  const nextPoll = () => POLL_MS + Math.random() * SPREAD_MS;
  const pageNumber = () => Number(new URLSearchParams(location.search).get("page")) || 1;

  function schedule(delay) {
    clearTimeout(timer);
    timer = null;
    if (stopped || document.hidden) return;
    timer = setTimeout(poll, Math.max(delay, notBefore - Date.now(), 0));
  }

  function retryAfterMs(response) {
    const header = response && response.headers.get("Retry-After");
    if (!header) return 0;
    const seconds = Number(header);
    const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
    return Number.isFinite(ms) ? Math.max(0, ms) : 0;
  }

  function failed(response) {
    failures += 1;
    const backOff = Math.min(LONGEST_WAIT_MS, POLL_MS * 2 ** failures);
    notBefore = Date.now() + Math.max(backOff / 2 + (Math.random() * backOff) / 2, retryAfterMs(response));
    schedule(0);
  }

  async function poll() {
    timer = null;
    if (stopped || busy || document.hidden) return;
    busy = true;
    lastAsked = Date.now();
    let response;
    try {
      const headers = { Accept: "application/json" };
      if (etag) headers["If-None-Match"] = etag;
      // no-store: the browser's own cache must neither answer nor turn a 304 into a 200.
      response = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
      if (response.status === 200) await changed(response);
    } catch {
      busy = false;
      failed(null); // offline, or an answer that was not the gallery
      return;
    }
    busy = false;
    if (response.status === 200 || response.status === 304) {
      failures = 0;
      notBefore = 0;
      schedule(nextPoll());
    } else if (response.status === 401 || response.status === 403 || response.status === 404) {
      stopped = true; // signed out, or the event is gone: the page says why on the next visit
    } else {
      failed(response); // 429, 503 and the like
    }
  }

  async function changed(response) {
    const data = await response.json();
    const ids = data.results.map((photo) => String(photo.id));
    const fresh = new Set(ids.filter((id) => !known.has(id)));
    // New photos beyond the answer's first page show only in its count.
    const grown = data.count - count;
    etag = response.headers.get("ETag") || "";
    count = data.count;
    ids.forEach((id) => known.add(id));
    const arrived = Math.max(fresh.size, grown);
    if (arrived > 0) announce(arrived, await insert(fresh));
  }

  // --- the new tiles -------------------------------------------------------------------------
  async function insert(fresh) {
    // On a later page the new photos belong to an earlier one: the notice leads there.
    if (!fresh.size || pageNumber() > 1) return [];
    let doc;
    try {
      const response = await fetch(location.pathname + location.search, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
        cache: "no-store",
      });
      if (!response.ok) return [];
      doc = new DOMParser().parseFromString(await response.text(), "text/html");
    } catch {
      return []; // the notice still says what arrived, and its button shows them
    }
    const here = new Map(tiles().map((tile) => [tile.dataset.photoId, tile]));
    if (!here.size) return adoptPage(doc, fresh);

    const incoming = tiles(doc);
    const added = [];
    incoming.forEach((tile, index) => {
      const id = tile.dataset.photoId;
      if (!fresh.has(id) || here.has(id)) return;
      // In the page's order: before the next tile this page has, else after the last one.
      const next = incoming.slice(index + 1).find((other) => here.has(other.dataset.photoId));
      const previous = incoming.slice(0, index).reverse().find((other) => here.has(other.dataset.photoId));
      const node = document.importNode(tile, true);
      if (next) here.get(next.dataset.photoId).before(node);
      else if (previous) here.get(previous.dataset.photoId).after(node);
      else return;
      here.set(id, node);
      added.push(node);
    });
    ["#photo-count", "[data-zip-label]"].forEach((selector) => {
      const mine = document.querySelector(selector);
      const theirs = doc.querySelector(selector);
      if (!mine || !theirs) return;
      mine.textContent = theirs.textContent;
      if (theirs.dataset.count) mine.dataset.count = theirs.dataset.count;
    });
    added.forEach(paint);
    return added;
  }

  // The page had no photo yet: it takes the new page's content whole, keeps this notice, and
  // runs the scripts and styles that only a page with photos includes.
  function adoptPage(doc, fresh) {
    const main = document.getElementById("main");
    const theirs = doc.getElementById("main");
    if (!main || !theirs || !tiles(doc).length) return [];
    main.replaceChildren(...Array.from(theirs.childNodes, (node) => document.importNode(node, true)));
    const copy = main.querySelector("#live-notice");
    if (copy) copy.replaceWith(region);
    const present = (selector, attribute) =>
      new Set(Array.from(document.querySelectorAll(selector), (el) => new URL(el.getAttribute(attribute), location.href).href));
    const styles = present("link[rel=stylesheet]", "href");
    doc.querySelectorAll("link[rel=stylesheet]").forEach((link) => {
      if (!styles.has(new URL(link.getAttribute("href"), location.href).href)) document.head.append(document.importNode(link, true));
    });
    const scripts = present("script[src]", "src");
    doc.querySelectorAll("script[src]").forEach((script) => {
      if (scripts.has(new URL(script.getAttribute("src"), location.href).href)) return;
      const element = document.createElement("script"); // a parsed script would never run
      element.src = script.getAttribute("src");
      document.body.append(element);
    });
    const added = tiles().filter((tile) => fresh.has(tile.dataset.photoId));
    added.forEach(paint);
    return added;
  }

  function paint(tile) {
    // The placeholder colour, as gallery.js paints it (the CSP forbids style="").
    tile.querySelectorAll("[data-placeholder]").forEach((link) => {
      const image = link.querySelector("img");
      if (image && link.dataset.placeholder) image.style.backgroundColor = link.dataset.placeholder;
    });
    // A ring, not an outline: gallery.css outlines the selected tiles.
    tile.style.boxShadow = `0 0 0 3px ${NEW_RING}, var(--shadow, 0 0 0 transparent)`;
    tile.dataset.liveNew = "";
    setTimeout(() => unmark([tile]), MARKED_MS);
  }

  function unmark(marked) {
    marked.forEach((tile) => {
      tile.style.boxShadow = "";
      delete tile.dataset.liveNew;
    });
  }

  // --- the notice ----------------------------------------------------------------------------
  function announce(arrived, added) {
    unseenCount += arrived;
    unseenTiles = unseenTiles.filter((tile) => tile.isConnected).concat(added);
    const photos = `${unseenCount} new photo${unseenCount === 1 ? "" : "s"} of you`;
    const note = document.createElement("p");
    note.className = "notice notice-info";
    note.append(unseenTiles.length ? `${photos}, added to your gallery. ` : `${photos}. `);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button button-small";
    button.textContent = unseenCount === 1 ? "Show it" : "Show them";
    button.addEventListener("click", show);
    note.append(button);
    region.replaceChildren(note);
  }

  function show() {
    const waiting = tiles().filter((tile) => unseenTiles.includes(tile));
    if (!waiting.length) {
      // Not on this page: the first page of the same gallery has them.
      const params = new URLSearchParams(location.search);
      params.delete("page");
      const query = params.toString();
      location.assign(location.pathname + (query ? `?${query}` : ""));
      return;
    }
    const first = waiting[0];
    const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    first.scrollIntoView({ block: "center", behavior: still ? "auto" : "smooth" });
    const target = first.querySelector(".tile-open, a, button");
    if (target) target.focus({ preventScroll: true });
    unseenCount = 0;
    unseenTiles = [];
    region.replaceChildren();
    // The ring stays a moment, so that the eye finds them.
    setTimeout(() => unmark(waiting), 4000);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else if (!busy && !timer) {
      // Back in view: ask soon, but never sooner than the usual pace or a pending back-off.
      schedule(Math.max(0, lastAsked + POLL_MS - Date.now()) + Math.random() * 1000);
    }
  });

  schedule(nextPoll());
})();
