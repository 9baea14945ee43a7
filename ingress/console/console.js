// The support console's page: three screens (messages, purge, broadcast) over the admin endpoints,
// all calls through api.js. Everything a user wrote (profile names) is put in the page as text,
// never as HTML.
import * as api from "./api.js";

const $ = (id) => document.getElementById(id);
const announce = (text) => {
  $("announce").textContent = text;
};

const STEP_WORDS = {
  MediaFetched: "fetching the media",
  JobCreated: "creating the job",
  Scheduled: "waiting for a GPU",
  Separated: "separating",
  Replied: "replying",
};
const TIMING_WORDS = { MediaFetched: "fetched", JobCreated: "job", Scheduled: "scheduled", Separated: "separated", Replied: "replied", Finished: "done" };

// ---- sign-in -------------------------------------------------------------------------------

function signIn() {
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  show("messages");
  follow();
}

function signOut(why) {
  api.token.clear();
  stopFollowing?.();
  for (const s of ["messages", "purge", "broadcast"]) $(s).hidden = true;
  $("nav").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = why ?? "";
  $("token").focus();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  api.token.set($("token").value);
  $("token").value = "";
  signIn();
});
$("sign-out").addEventListener("click", () => signOut());

const NOT_ALLOWED = "Not allowed: your role does not grant this (the support-operator ClusterRole does).";

/** A refused token ends the session; anything else is shown where it happened. */
function failed(where, err) {
  if (err instanceof api.Unauthorized) signOut("The token was refused: sign in again.");
  else if (err instanceof api.Forbidden) $(where).textContent = `${NOT_ALLOWED} ${err.message}.`;
  else $(where).textContent = `Failed: ${err.message}`;
}

// ---- screens -------------------------------------------------------------------------------

function show(screen) {
  for (const b of document.querySelectorAll("nav [data-screen]")) {
    const on = b.dataset.screen === screen;
    $(b.dataset.screen).hidden = !on;
    if (on) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  if (screen === "broadcast") loadTemplates();
}
for (const b of document.querySelectorAll("nav [data-screen]")) b.addEventListener("click", () => show(b.dataset.screen));

// ---- messages: a snapshot, then live changes -----------------------------------------------

/** Rows by SeparationJob name. */
const rows = new Map();
let stopFollowing;

function merge(row) {
  const before = rows.get(row.name);
  // the sender Secret goes once the reply is out: keep what this page already showed
  rows.set(row.name, { ...row, profileName: row.profileName ?? before?.profileName ?? null, number: row.number ?? before?.number ?? null });
  return !before;
}

function onEvent(event, data) {
  if (event === "snapshot") {
    const seen = new Map(rows);
    rows.clear();
    for (const row of data.jobs) {
      const before = seen.get(row.name);
      if (before) rows.set(row.name, before);
      merge(row);
    }
    $("jobs-invalid").hidden = data.invalid === 0;
    $("jobs-invalid").textContent = `${data.invalid} SeparationJob(s) could not be read and are not shown.`;
  } else if (event === "job") {
    if (merge(data)) announce(`New message: ${data.kind}, ${data.profileName ?? "sender unknown"}`);
  } else if (event === "removed") rows.delete(data.name);
  $("live").textContent = `Live: updated ${new Date().toLocaleTimeString()}`;
  render();
}

async function follow() {
  const stop = new AbortController();
  stopFollowing = () => stop.abort();
  let delay = 1000;
  while (!stop.signal.aborted) {
    try {
      await api.jobs.follow(onEvent, stop.signal);
      delay = 1000;
    } catch (err) {
      if (stop.signal.aborted) return;
      if (err instanceof api.Unauthorized) return signOut("The token was refused: sign in again.");
      if (err instanceof api.Forbidden) {
        $("live").textContent = `Not allowed to list messages: ${err.message}.`;
        return;
      }
      delay = Math.min(delay * 2, 30_000);
    }
    $("live").textContent = "Disconnected: reconnecting…";
    await new Promise((r) => setTimeout(r, delay));
  }
}

const cell = (text) => {
  const td = document.createElement("td");
  td.textContent = text ?? "—";
  return td;
};

function statusText(r) {
  if (r.state === "succeeded") return "succeeded";
  const step = r.step ? STEP_WORDS[r.step] : "starting";
  const reason = r.stepReason ? ` (${r.stepReason})` : "";
  return r.state === "failed" ? `failed while ${step}${reason}` : `${step}${reason}`;
}

const timingsText = (t) =>
  Object.entries(TIMING_WORDS)
    .filter(([k]) => t[k] !== undefined)
    .map(([k, word]) => `${word} ${t[k]}`)
    .join(" · ");

function render() {
  const state = $("filter-state").value;
  const since = Number($("filter-since").value);
  const from = since ? Date.now() - since * 1000 : 0;
  const shown = [...rows.values()]
    .filter((r) => (!state || r.state === state) && Date.parse(r.createdAt ?? "") >= from)
    .sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)));
  const body = $("jobs").tBodies[0];
  body.replaceChildren(
    ...shown.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.name = r.name;
      tr.dataset.state = r.state;
      const trace = document.createElement("td");
      if (r.traceUrl) {
        const a = document.createElement("a");
        a.href = r.traceUrl;
        a.rel = "noreferrer noopener";
        a.target = "_blank";
        a.textContent = r.traceId;
        trace.append(a);
      } else trace.textContent = r.traceId ?? "—";
      const status = cell(statusText(r));
      status.className = "status";
      tr.append(
        cell(new Date(r.createdAt).toLocaleString()),
        cell(r.profileName),
        cell(r.number),
        cell(r.kind),
        cell(r.format),
        status,
        cell(timingsText(r.timings ?? {})),
        cell(r.failure),
        trace,
      );
      return tr;
    }),
  );
  $("jobs-empty").hidden = shown.length > 0;
}
$("filter-state").addEventListener("change", render);
$("filter-since").addEventListener("change", render);

// ---- purge -----------------------------------------------------------------------------------

const COUNT_WORDS = {
  jobs: "SeparationJobs",
  results: "Cached results",
  keyValueEntries: "Activity and rate-limit entries",
  deadLetters: "Dead letters",
  optedOut: "Opted out",
};

function showCounts(dl, counts) {
  dl.replaceChildren(
    ...Object.entries(COUNT_WORDS).flatMap(([k, word]) => {
      const dt = document.createElement("dt");
      dt.textContent = word;
      const dd = document.createElement("dd");
      dd.dataset.count = k;
      dd.textContent = typeof counts[k] === "boolean" ? (counts[k] ? "yes" : "no") : String(counts[k] ?? 0);
      return [dt, dd];
    }),
  );
}

let lookedUp = null;
let held = null;

$("lookup-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("purge-error").textContent = "";
  $("purge-result").hidden = true;
  const id = $("lookup-id").value;
  try {
    held = await api.users.lookup(id);
    lookedUp = id;
    showCounts($("held-counts"), held);
    $("held").hidden = false;
    announce(`Found: ${held.jobs} SeparationJobs, ${held.results} cached results.`);
  } catch (err) {
    $("held").hidden = true;
    failed("purge-error", err);
  }
});

const dialog = $("confirm");
$("purge-start").addEventListener("click", () => {
  $("confirm-text").textContent =
    `This deletes ${held.jobs} SeparationJob(s), ${held.results} cached result(s), ${held.keyValueEntries} activity entries and ${held.deadLetters} dead letter(s), and opts the user out. It cannot be undone.`;
  // the focus starts on Purge: Enter presses it; Escape is the dialog's own cancel; Tab reaches Cancel
  dialog.showModal();
  $("confirm-purge").focus();
});
$("confirm-purge").addEventListener("click", () => purge());
$("confirm-cancel").addEventListener("click", () => dialog.close());
dialog.addEventListener("close", () => {
  if (!$("held").hidden) $("purge-start").focus();
});

async function purge() {
  dialog.close();
  try {
    const erased = await api.users.purge(lookedUp);
    $("held").hidden = true;
    showCounts($("purge-counts"), erased);
    $("purge-result").hidden = false;
    announce(`Purged: ${erased.jobs} SeparationJobs and ${erased.results} cached results deleted; the user is opted out.`);
    $("lookup-id").focus();
  } catch (err) {
    failed("purge-error", err);
  }
}

// ---- broadcast -------------------------------------------------------------------------------

let templatesLoaded = false;
async function loadTemplates() {
  if (templatesLoaded) return;
  templatesLoaded = true;
  try {
    const list = await api.broadcasts.templates();
    $("bc-templates").replaceChildren(
      ...list.map((t) => {
        const o = document.createElement("option");
        o.value = t.name;
        o.label = `${t.name} (${t.languageCode})`;
        return o;
      }),
    );
  } catch (err) {
    templatesLoaded = false;
    failed("bc-error", err);
  }
}

function notice() {
  const text = $("bc-text").value.trim();
  const name = $("bc-template").value.trim();
  return {
    ...(text ? { text } : {}),
    ...(name ? { template: { name, languageCode: $("bc-language").value.trim() || "en" } } : {}),
  };
}

const PLAN_WORDS = {
  total: "Active users",
  text: "As text (inside the 24-hour window)",
  template: "As the template (outside it)",
  optedOut: "Skipped: opted out",
  outsideWindow: "Skipped: outside the window, and no template",
};
const PROGRESS_WORDS = {
  state: "State",
  total: "Recipients",
  sent: "Sent",
  text: "As text",
  template: "As template",
  skipped: "Skipped",
  failed: "Failed",
  unconfirmed: "Unconfirmed (the worker stopped while sending; never sent twice)",
};
/** A campaign is over once no recipient is left to send to. */
const FINISHED = "Finished";

function showPairs(dl, words, values) {
  dl.replaceChildren(
    ...Object.entries(words).flatMap(([k, word]) => {
      const dt = document.createElement("dt");
      dt.textContent = word;
      const dd = document.createElement("dd");
      dd.dataset.count = k;
      dd.textContent = String(values[k] ?? 0);
      return [dt, dd];
    }),
  );
}

/** The idempotency key of the notice as composed now: a new one whenever it changes. */
let composedKey = api.idempotencyKey();
for (const id of ["bc-text", "bc-template", "bc-language"])
  $(id).addEventListener("input", () => {
    $("bc-start").disabled = true;
    composedKey = api.idempotencyKey();
  });

$("bc-dry-run").addEventListener("click", async () => {
  $("bc-error").textContent = "";
  const n = notice();
  if (!n.text && !n.template) {
    $("bc-error").textContent = "Write a text or name a template first.";
    return;
  }
  try {
    const plan = await api.broadcasts.dryRun(n);
    showPairs($("bc-plan-counts"), PLAN_WORDS, { total: plan.total, ...plan.byKind, ...plan.skipped });
    $("bc-plan-refusal").textContent = plan.refusal ? `It would not start: ${plan.refusal}` : "";
    $("bc-plan").hidden = false;
    $("bc-start").disabled = Boolean(plan.refusal);
  } catch (err) {
    failed("bc-error", err);
  }
});

$("bc-start").addEventListener("click", async () => {
  $("bc-error").textContent = "";
  $("bc-start").disabled = true;
  const shown = (c) => showPairs($("bc-progress-counts"), PROGRESS_WORDS, { ...c, ...c.byKind });
  try {
    const { id } = await api.broadcasts.start(notice(), composedKey);
    $("bc-progress").hidden = false;
    let campaign = await api.broadcasts.progress(id);
    shown(campaign);
    while (campaign.state !== FINISHED) {
      await new Promise((r) => setTimeout(r, 2000));
      campaign = await api.broadcasts.progress(id);
      shown(campaign);
    }
    announce(`Broadcast finished: ${campaign.sent} sent, ${campaign.skipped} skipped, ${campaign.failed} failed.`);
  } catch (err) {
    failed("bc-error", err);
  }
});

// ---- start -----------------------------------------------------------------------------------

if (api.token.get()) signIn();
else $("token").focus();
