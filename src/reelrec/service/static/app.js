// reelrec web page: plain JavaScript over the service's JSON API (no build step, nothing loaded
// from the network). Every piece of data reaches the page through textContent or setAttribute,
// never through innerHTML, so titles and error messages are always shown as text.
"use strict";

(() => {
  const COOKIE = "reelrec_profile";
  const COOKIE_MAX_AGE = 365 * 24 * 3600; // one year, in seconds
  const PROFILE_ID = /^[A-Za-z0-9_-]{1,64}$/;
  const PAGE = 20;
  const DEBOUNCE_MS = 250;
  const N_RECS = 10;
  const EPS = 1e-6;

  const $ = (id) => document.getElementById(id);

  const state = {
    pid: null,
    scale: { low: 1, high: 5, step: 1 },
    levels: [1, 2, 3, 4, 5],
    ratings: new Map(), // movie id (text) -> this profile's rating
    movies: new Map(), // movie id (text) -> the latest movie record seen (for names)
    query: "",
    genre: "",
    shown: 0,
    pendingWrites: 0,
    opener: null,
  };
  // a counter per kind of request: an answer is used only if no newer request of its kind was sent
  const seq = { search: 0, recs: 0, details: 0, user: 0 };

  // ------------------------------------------------------------------ helpers
  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(path, { method = "GET", body } = {}) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, `the service did not answer (${err && err.message ? err.message : err})`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const detail =
        data && typeof data.detail === "string"
          ? data.detail
          : `HTTP ${response.status}${response.statusText ? " " + response.statusText : ""}`;
      throw new ApiError(response.status, detail);
    }
    return data;
  }

  const enc = encodeURIComponent;

  /** An element with text, attributes, listeners and children; strings become text nodes. */
  function el(tag, opts = {}, children = []) {
    const node = document.createElement(tag);
    if (opts.className) node.className = opts.className;
    if (opts.text !== undefined && opts.text !== null) node.textContent = String(opts.text);
    for (const [k, v] of Object.entries(opts.attrs || {})) {
      if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const [k, f] of Object.entries(opts.on || {})) node.addEventListener(k, f);
    for (const child of children) if (child !== undefined && child !== null) node.append(child);
    return node;
  }

  function setStatus(message, kind = "info") {
    const status = $("status");
    status.textContent = message;
    status.className = `status ${kind}`;
    status.dataset.kind = kind;
  }

  function report(context, err) {
    const detail = err instanceof Error ? err.message : String(err);
    setStatus(`${context}: ${detail}`, "error");
    if (!(err instanceof ApiError)) console.error(err); // a bug in this page, not an API answer
  }

  window.addEventListener("error", (e) => setStatus(`Page error: ${e.message}`, "error"));
  window.addEventListener("unhandledrejection", (e) => report("Page error", e.reason));

  const fmt = (v) => String(Math.round(Number(v) * 100) / 100);
  const key = (movie) => String(movie.movie_id);
  const name = (movie) => (movie.title ? movie.title : `movie ${movie.movie_id}`);
  const sameRating = (a, b) => a !== undefined && b !== undefined && Math.abs(a - b) < EPS;

  function remember(movie) {
    if (movie && movie.movie_id !== undefined) state.movies.set(key(movie), movie);
  }

  // ------------------------------------------------------------------ cookie
  function readCookie() {
    for (const part of document.cookie.split(";")) {
      const [k, ...rest] = part.trim().split("=");
      if (k === COOKIE) {
        try {
          return decodeURIComponent(rest.join("="));
        } catch {
          return null;
        }
      }
    }
    return null;
  }

  function writeCookie(pid) {
    document.cookie = `${COOKIE}=${enc(pid)}; Max-Age=${COOKIE_MAX_AGE}; Path=/; SameSite=Lax`;
  }

  // ------------------------------------------------------------------ rating scale
  function levelsFor(scale) {
    const low = Number.isFinite(scale.low) ? scale.low : 1;
    const high = Number.isFinite(scale.high) ? scale.high : 5;
    if (!(high > low)) return [low];
    let step = Number.isFinite(scale.step) && scale.step > 0 ? scale.step : 1;
    if ((high - low) / step + 1 > 10.5) step = (high - low) / 4; // a wide continuous scale: 5 levels
    const out = [];
    for (let v = low; v <= high + EPS; v += step) out.push(Math.round(v * 1e6) / 1e6);
    if (out.length < 2) return [low, high];
    return out;
  }

  // ------------------------------------------------------------------ rating control
  /** Buttons for each level of the scale (and one to remove the rating) for one movie. */
  function ratingControl(movie) {
    remember(movie);
    const id = key(movie);
    const title = name(movie);
    const numeric = state.levels.some((v) => !Number.isInteger(v)) || state.levels.length > 10;
    const group = el("div", {
      className: numeric ? "stars numeric" : "stars",
      attrs: { role: "group", "aria-label": `Your rating for ${title}`, "data-movie-id": id },
    });
    for (const v of state.levels) {
      const label = `Rate ${title} ${fmt(v)} ${v === 1 ? "star" : "stars"}`;
      group.append(
        el("button", {
          className: "star",
          text: numeric ? fmt(v) : "★",
          attrs: { type: "button", "aria-label": label, title: `${fmt(v)}★`, "data-value": fmt(v) },
          on: { click: () => rate(id, v) },
        }),
      );
    }
    group.append(
      el("button", {
        className: "unrate",
        text: "✕",
        attrs: {
          type: "button",
          "aria-label": `Remove your rating for ${title}`,
          title: "Remove your rating",
          "data-testid": "unrate",
        },
        on: { click: () => rate(id, null) },
      }),
      el("span", { className: "current", attrs: { "data-testid": "current-rating" } }),
    );
    updateControl(group);
    return group;
  }

  function updateControl(group) {
    const current = state.ratings.get(group.dataset.movieId);
    for (const b of group.querySelectorAll("button.star")) {
      const v = Number(b.dataset.value);
      b.classList.toggle("on", current !== undefined && v <= current + EPS);
      b.setAttribute("aria-pressed", String(sameRating(v, current)));
    }
    const unrate = group.querySelector("button.unrate");
    if (current === undefined && document.activeElement === unrate) group.querySelector("button.star").focus();
    unrate.hidden = current === undefined;
    const label = group.querySelector(".current");
    label.textContent = current === undefined ? "not rated" : `your rating: ${fmt(current)}`;
    group.closest(".movie")?.classList.toggle("rated", current !== undefined);
  }

  function updateControls() {
    for (const group of document.querySelectorAll(".stars[data-movie-id]")) updateControl(group);
  }

  /** Store (value) or remove (null) a rating: shown at once, written in order, then re-read. */
  function rate(id, value) {
    const movie = state.movies.get(id) || { movie_id: id, title: null };
    if (!state.pid) {
      setStatus("Ratings cannot be saved: there is no profile (see the message above, then reload).", "error");
      return Promise.resolve();
    }
    if (value === null) state.ratings.delete(id);
    else state.ratings.set(id, value);
    updateControls();
    state.pendingWrites += 1;
    state.writes = (state.writes || Promise.resolve()).then(async () => {
      const path = `/profiles/${enc(state.pid)}/ratings/${enc(id)}`;
      let profile = null;
      try {
        profile =
          value === null
            ? await api(path, { method: "DELETE" })
            : await api(path, { method: "PUT", body: { rating: value } });
        setStatus(
          value === null
            ? `Removed your rating for ${name(movie)}.`
            : `Saved: ${name(movie)} ${fmt(value)}★. Updating your recommendations…`,
        );
      } catch (err) {
        report(value === null ? `Could not remove the rating for ${name(movie)}` : `Could not rate ${name(movie)}`, err);
      } finally {
        state.pendingWrites -= 1;
      }
      if (state.pendingWrites > 0) return; // a later write will refresh everything
      if (profile === null) {
        try {
          profile = await api(`/profiles/${enc(state.pid)}`);
        } catch (err) {
          report("Could not reload your ratings", err);
          return;
        }
      }
      applyProfile(profile);
      await loadRecommendations();
    });
    return state.writes;
  }

  // ------------------------------------------------------------------ movie list entries
  function titleButton(movie) {
    const year = movie.year ? ` (${movie.year})` : "";
    return el("button", {
      className: "link title",
      text: `${name(movie)}${year}`,
      attrs: { type: "button", "aria-haspopup": "dialog", "data-testid": "movie-title" },
      on: { click: (e) => openDetails(key(movie), e.currentTarget) },
    });
  }

  /**
   * One list entry: title (year) as a button opening the details, genres, then optional score,
   * reason, a fixed rating (someone else's) and this profile's rating control.
   */
  function movieItem(movie, { score, reason, fixedRating, control = true } = {}) {
    remember(movie);
    const genres = movie.genres && movie.genres.length ? movie.genres.join(", ") : "no genres listed";
    const li = el("li", {
      className: "movie",
      attrs: { "data-testid": "movie", "data-movie-id": key(movie) },
    });
    li.append(el("div", { className: "head" }, [titleButton(movie)]));
    const meta = el("p", { className: "meta" }, [el("span", { className: "genres", text: genres })]);
    if (score) meta.append(el("span", { className: "score", text: score }));
    if (fixedRating !== undefined) meta.append(el("span", { className: "given", text: `rated ${fmt(fixedRating)}★` }));
    li.append(meta);
    if (reason) li.append(el("p", { className: "reason", text: reason, attrs: { "data-testid": "reason" } }));
    if (control) li.append(ratingControl(movie));
    return li;
  }

  function scoreText(score, personalised) {
    const { low, high } = state.scale;
    const rating = state.predictsRatings !== false && score >= low - EPS && score <= high + EPS;
    if (personalised && rating) return `predicted ${score.toFixed(1)}★`;
    return `score ${Number(score).toPrecision(3)}`;
  }

  function emptyItem(text) {
    return el("li", { className: "empty muted", text });
  }

  // ------------------------------------------------------------------ search
  async function search({ append = false } = {}) {
    const mine = ++seq.search;
    const offset = append ? state.shown : 0;
    const params = new URLSearchParams({ query: state.query, limit: String(PAGE), offset: String(offset) });
    if (state.genre) params.set("genre", state.genre);
    const list = $("results");
    list.setAttribute("aria-busy", "true");
    try {
      const data = await api(`/movies?${params}`);
      if (mine !== seq.search) return;
      const items = data.movies.map((m) => movieItem(m));
      if (append) list.append(...items);
      else list.replaceChildren(...items);
      state.shown = offset + data.movies.length;
      const what = state.query || state.genre ? "matching movies" : "movies, most rated first";
      $("results-summary").textContent =
        data.total === 0
          ? `No movies match${state.query ? ` “${state.query}”` : ""}${state.genre ? ` in ${state.genre}` : ""}.`
          : `Showing ${state.shown} of ${data.total} ${what}.`;
      $("more").hidden = state.shown >= data.total;
    } catch (err) {
      if (mine === seq.search) report("Search failed", err);
    } finally {
      if (mine === seq.search) list.setAttribute("aria-busy", "false");
    }
  }

  let debounce = null;
  function searchSoon() {
    clearTimeout(debounce);
    debounce = setTimeout(() => search(), DEBOUNCE_MS);
  }

  // ------------------------------------------------------------------ profile and its lists
  async function ensureProfile() {
    const stored = readCookie();
    if (stored && PROFILE_ID.test(stored)) {
      try {
        const profile = await api(`/profiles/${enc(stored)}`);
        usePid(profile.id);
        applyProfile(profile);
        return;
      } catch (err) {
        if (err.status !== 404) throw err; // only an unknown profile is replaced
      }
    }
    const profile = await api("/profiles", { method: "POST" });
    usePid(profile.id);
    applyProfile(profile);
    if (stored) setStatus("Your saved profile was not found on this server, so a new one was started.");
  }

  function usePid(pid) {
    state.pid = pid;
    writeCookie(pid); // (re)written on every visit: the year counts from the last visit
    document.body.dataset.profile = pid;
  }

  function applyProfile(profile) {
    state.ratings = new Map(profile.ratings.map((r) => [key(r), r.rating]));
    const sorted = [...profile.ratings].sort(
      (a, b) => b.rating - a.rating || name(a).localeCompare(name(b)),
    );
    $("my-ratings").replaceChildren(...sorted.map((r) => movieItem(r)));
    $("my-ratings-empty").hidden = sorted.length > 0;
    $("my-count").textContent = sorted.length ? `(${sorted.length})` : "";
    updateControls();
  }

  async function loadRecommendations() {
    const mine = ++seq.recs;
    const list = $("recommendations");
    list.setAttribute("aria-busy", "true");
    try {
      const data = await api(`/profiles/${enc(state.pid)}/recommendations?n=${N_RECS}`);
      if (mine !== seq.recs) return;
      list.dataset.personalised = String(data.personalised);
      const n = state.ratings.size;
      $("recs-kind").textContent = data.personalised
        ? `Personalised from your ${n} ${n === 1 ? "rating" : "ratings"} (model: ${data.model}).`
        : "Most popular movies: not personalised yet. Rate a few movies you know to get your own list.";
      $("recs-kind").className = data.personalised ? "muted personalised" : "muted popular";
      list.replaceChildren(
        ...(data.items.length
          ? data.items.map((m) =>
              movieItem(m, { score: scoreText(m.score, data.personalised), reason: m.reason }),
            )
          : [emptyItem("Nothing to recommend: every movie is rated already.")]),
      );
    } catch (err) {
      if (mine === seq.recs) report("Could not load your recommendations", err);
    } finally {
      if (mine === seq.recs) list.setAttribute("aria-busy", "false");
    }
  }

  // ------------------------------------------------------------------ details
  async function openDetails(id, opener) {
    const dialog = $("details");
    const mine = ++seq.details;
    if (!dialog.open) state.opener = opener || document.activeElement;
    const known = state.movies.get(id);
    $("details-title").textContent = known ? name(known) : "Loading…";
    $("details-meta").textContent = "";
    $("details-rating").replaceChildren();
    $("similar-note").textContent = "Loading similar movies…";
    $("similar").replaceChildren();
    $("similar").setAttribute("aria-busy", "true");
    if (!dialog.open) {
      if (typeof dialog.showModal === "function") dialog.showModal();
      else dialog.setAttribute("open", "");
    }
    const [movie, similar] = await Promise.allSettled([
      api(`/movies/${enc(id)}`),
      api(`/movies/${enc(id)}/similar?n=10`),
    ]);
    if (mine !== seq.details) return;
    $("similar").setAttribute("aria-busy", "false");
    if (movie.status === "fulfilled") {
      const m = movie.value;
      remember(m);
      $("details-title").textContent = `${name(m)}${m.year ? ` (${m.year})` : ""}`;
      const genres = m.genres.length ? m.genres.join(", ") : "no genres listed";
      $("details-meta").textContent =
        `${genres} · learned from ${m.n_ratings} ${m.n_ratings === 1 ? "rating" : "ratings"} · id ${m.movie_id}`;
      $("details-rating").replaceChildren(ratingControl(m));
    } else {
      $("details-title").textContent = "Movie not found";
      report("Could not load the movie", movie.reason);
    }
    if (similar.status === "fulfilled") {
      const items = similar.value;
      $("similar-note").textContent = items.length ? "Closest by the model's movie embeddings (cosine)." : "";
      $("similar").replaceChildren(
        ...(items.length
          ? items.map((m) => movieItem(m, { score: `similarity ${m.score.toFixed(2)}` }))
          : [emptyItem("No similar movies.")]),
      );
    } else {
      const err = similar.reason;
      // not an error of the page: the model may have no embeddings, or the movie no ratings
      $("similar-note").textContent = `No similar movies: ${err instanceof Error ? err.message : err}`;
    }
    $("details-title").focus();
  }

  function closeDetails() {
    const dialog = $("details");
    if (dialog.open) dialog.close();
  }

  // ------------------------------------------------------------------ known users
  async function loadUsers() {
    try {
      const users = await api("/users?limit=50");
      const picker = $("user-picker");
      picker.append(
        ...users.map((u) =>
          el("option", {
            text: `User ${u.user_id} (${u.n_ratings} ${u.n_ratings === 1 ? "rating" : "ratings"})`,
            attrs: { value: String(u.user_id) },
          }),
        ),
      );
    } catch (err) {
      report("Could not load the list of users", err);
    }
  }

  async function showUser(userId) {
    const mine = ++seq.user;
    const view = $("user-view");
    if (!userId) {
      view.hidden = true;
      return;
    }
    $("user-name").textContent = `user ${userId}`;
    $("user-recs").replaceChildren(emptyItem("Loading…"));
    $("user-ratings").replaceChildren();
    $("user-recs").dataset.user = "";
    view.hidden = false;
    try {
      const [recs, ratings] = await Promise.all([
        api(`/users/${enc(userId)}/recommendations?n=${N_RECS}`),
        api(`/users/${enc(userId)}/ratings?limit=10`),
      ]);
      if (mine !== seq.user) return;
      $("user-recs").replaceChildren(
        ...(recs.items.length
          ? recs.items.map((m) =>
              movieItem(m, {
                score: scoreText(m.score, true),
                reason: m.reason ? m.reason.replace(/^because you rated/, "because they rated") : null,
                control: false,
              }),
            )
          : [emptyItem("Nothing to recommend.")]),
      );
      $("user-ratings").replaceChildren(
        ...ratings.map((m) =>
          movieItem(m, { fixedRating: Number.isFinite(m.rating) ? m.rating : undefined, control: false }),
        ),
      );
      $("user-recs").dataset.user = userId;
    } catch (err) {
      if (mine === seq.user) {
        $("user-recs").replaceChildren();
        report(`Could not load user ${userId}`, err);
      }
    }
  }

  // ------------------------------------------------------------------ start
  async function loadHealth() {
    const h = await api("/health");
    state.predictsRatings = h.predicts_ratings !== false;
    if (h.rating_scale) {
      state.scale = {
        low: Number(h.rating_scale.low ?? 1),
        high: Number(h.rating_scale.high ?? 5),
        step: h.rating_scale.step == null ? null : Number(h.rating_scale.step),
      };
      state.levels = levelsFor(state.scale);
    }
    const parts = [`Model ${h.model}`];
    if (h.dataset) parts.push(`trained on ${h.dataset}`);
    parts.push(`${h.n_users} users`, `${h.n_items} movies`);
    parts.push(`ratings ${fmt(state.scale.low)}–${fmt(state.scale.high)}`);
    $("run-info").textContent = parts.join(" · ");
  }

  async function loadGenres() {
    try {
      const genres = await api("/genres");
      $("genre").append(...genres.map((g) => el("option", { text: g, attrs: { value: g } })));
    } catch (err) {
      report("Could not load the genres", err);
    }
  }

  function wire() {
    $("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      clearTimeout(debounce);
      state.query = $("search").value.trim();
      search();
    });
    $("search").addEventListener("input", () => {
      const q = $("search").value.trim();
      if (q === state.query) return;
      state.query = q;
      searchSoon();
    });
    $("genre").addEventListener("change", () => {
      state.genre = $("genre").value;
      clearTimeout(debounce);
      search();
    });
    $("more").addEventListener("click", () => search({ append: true }));
    $("user-picker").addEventListener("change", () => showUser($("user-picker").value));
    $("details-close").addEventListener("click", closeDetails);
    const dialog = $("details");
    dialog.addEventListener("click", (e) => {
      if (e.target === dialog) closeDetails(); // a click on the backdrop
    });
    dialog.addEventListener("close", () => {
      seq.details += 1;
      if (state.opener && state.opener.isConnected) state.opener.focus();
      state.opener = null;
    });
    $("details-title").tabIndex = -1;
  }

  async function start() {
    wire();
    try {
      await loadHealth();
    } catch (err) {
      report("The service is not answering /health", err);
      $("run-info").textContent = "Service unavailable.";
    }
    loadGenres();
    loadUsers();
    try {
      await ensureProfile();
    } catch (err) {
      report("Could not open your profile, so ratings cannot be saved", err);
      search();
      return;
    }
    await Promise.all([search(), loadRecommendations()]);
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
