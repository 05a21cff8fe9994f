// supportbot studio: the page. Plain JS, no libraries, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("studio-token") || "";
let lastSeq = 0;
let currentState = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, body) {
  const init = { headers: { "X-Studio-Token": token } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    askToken(token ? "Неверный токен." : "");
    throw new Error("token");
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function askToken(message) {
  $("studio").hidden = true;
  $("token-form").hidden = false;
  $("token-error").textContent = message;
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token-input").value;
  sessionStorage.setItem("studio-token", token);
  start();
});

// --- the map and the findings -------------------------------------------------------
async function loadMap() {
  const flow = $("map-flow").value;
  const data = await api("/api/map" + (flow ? `?flow=${encodeURIComponent(flow)}` : ""));
  $("map").innerHTML = data.svg;
  $("version").textContent = `версия диалогов ${data.version}`;
  const select = $("map-flow");
  const known = new Set([...select.options].map((o) => o.value));
  for (const name of data.flows) if (!known.has(name)) select.append(el("option", { value: name }, name));
  markCurrent();
}

function markCurrent() {
  for (const node of document.querySelectorAll("#map .current")) node.classList.remove("current");
  if (!currentState) return;
  for (const node of document.querySelectorAll(`#map [data-state="${CSS.escape(currentState)}"]`)) {
    node.classList.add("current");
  }
}

$("map").addEventListener("click", (event) => {
  const node = event.target.closest("[data-state]");
  if (node) showState(node.getAttribute("data-state"));
});
$("map-flow").addEventListener("change", loadMap);

async function showState(name) {
  const box = $("state-info");
  let data;
  try {
    data = await api(`/api/state?name=${encodeURIComponent(name)}`);
  } catch (error) {
    return;
  }
  box.hidden = false;
  box.replaceChildren(
    el("h3", {}, data.state),
    el("p", { class: "where" }, `${data.file}:${data.line}`),
    el("h4", {}, "Текст"),
    el("pre", {}, data.text || "(без текста)"),
    el("h4", {}, "Кнопки"),
    el("div", { class: "buttons" }, ...(data.buttons.length ? data.buttons.map(
      (row) => el("div", { class: "row" }, ...row.map((label) => el("span", { class: "button static" }, label)))
    ) : ["(нет)"])),
    el("h4", {}, "Переходы"),
    el("ul", {}, ...Object.entries(data.on).map(([event, to]) => el("li", {}, `${event} → ${to.join(" / ")}`))),
  );
  if (data.input) box.append(el("p", {}, `Ждёт ввод: ${data.input.kind} → ${data.input.slot}`));
}

async function loadFindings() {
  const data = await api("/api/findings");
  const list = $("findings");
  list.replaceChildren(...data.findings.map((f) =>
    el("li", { class: f.severity, "data-code": f.code }, el("code", {}, f.text))));
  $("findings-count").textContent = `ошибок: ${data.errors}, предупреждений: ${data.warnings}`;
  if (!data.findings.length) list.append(el("li", { class: "clean" }, "Ошибок нет."));
  const banner = $("reload-banner");
  banner.hidden = !data.refused;
  banner.textContent = data.refused
    ? "В файлах ошибки — новая версия не принята. Симулятор и схема работают на последней исправной версии, как и бот."
    : "";
}

async function refreshFlows() {
  await Promise.all([loadFindings(), loadMap()]);
}

// --- the simulator ------------------------------------------------------------------
function buttonRows(item, live) {
  return el("div", { class: "buttons" }, ...item.buttons.map((row) => el("div", { class: "row" },
    ...row.map((b) => el("button", {
      type: "button", class: `button ${b.color || ""}`, "data-payload": b.payload,
      disabled: live ? null : "disabled",
      onclick: () => send({ payload: b.payload, label: b.label, text: b.label }),
    }, b.label)))));
}

function renderChat(items) {
  const chat = $("chat");
  for (const item of items) {
    lastSeq = Math.max(lastSeq, item.seq);
    const bubble = el("div", { class: `msg ${item.kind}${item.inline ? " inline" : ""}`, "data-seq": item.seq });
    const who = { user: "Вы", bot: "Бот", notice: "Бот (уведомление)", letter: "Письмо",
                  agent: "Специалист", system: "studio" }[item.kind] || item.kind;
    bubble.append(el("div", { class: "who" }, who), el("div", { class: "text" }, item.text));
    if (item.buttons.length) bubble.append(buttonRows(item, true));
    chat.append(bubble);
  }
  // Keyboard buttons hold only under the newest reply (as in VK); inline ones stay.
  const replies = [...chat.querySelectorAll(".msg.bot")];
  replies.forEach((reply, i) => {
    const inline = reply.classList.contains("inline");
    for (const b of reply.querySelectorAll("button")) b.disabled = i !== replies.length - 1 && !inline;
  });
  chat.scrollTop = chat.scrollHeight;
}

function showSession(data) {
  currentState = data.state;
  $("session-state").textContent = `${data.state || "(нет)"} · ${data.peer} · шагов для теста: ${data.steps}`;
  $("slots").textContent = JSON.stringify(data.slots, null, 2);
  markCurrent();
  renderChat(data.items.filter((i) => i.seq > lastSeq));
}

async function loadSession() {
  showSession(await api(`/api/session?since=${lastSeq}`));
}

async function send(body) {
  $("chat").classList.add("busy");
  try {
    await api("/api/chat", body);
    await loadSession();
  } finally {
    $("chat").classList.remove("busy");
  }
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, mime: file.type, data: reader.result.split(",", 2)[1] || "" });
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("message").value;
  const files = await Promise.all([...$("files").files].map(readFile));
  if (!text.trim() && !files.length) return;
  $("message").value = "";
  $("files").value = "";
  await send({ text, files });
});

$("restart").addEventListener("click", async () => {
  $("chat").replaceChildren();
  lastSeq = 0;
  await api("/api/restart", {});
  await loadSession();
});

async function agent(action, value) {
  const data = await api("/api/agent", { action, value });
  $("agent-answer").textContent = data.answer;
  await loadSession();
}
$("agent-comment").addEventListener("submit", (event) => {
  event.preventDefault();
  agent("comment", $("agent-text").value);
  $("agent-text").value = "";
});
$("agent-state").addEventListener("submit", (event) => {
  event.preventDefault();
  agent("state", $("agent-code").value);
});

// --- conversation tests -------------------------------------------------------------
$("tests-run").addEventListener("click", async () => {
  const box = $("tests-result");
  box.replaceChildren(el("p", { class: "muted" }, "Тесты идут…"));
  const data = await api("/api/tests/run", {});
  const summary = el("p", { class: data.failed ? "error" : "ok" },
    `Прошли: ${data.passed}, упали: ${data.failed} (${data.seconds} с)`);
  const problems = data.problems.map((p) => el("p", { class: "error" }, el("code", {}, p)));
  const failed = data.tests.filter((t) => !t.passed).map((t) => el("div", { class: "failure" },
    el("h4", {}, `✗ ${t.name}`), el("p", { class: "where" }, t.where),
    ...t.failures.map((f) => f.expected !== undefined
      ? el("div", { class: "diff" },
          el("p", { class: "where" }, f.where),
          el("div", { class: "minus" }, `− ожидалось: ${f.expected}`),
          el("div", { class: "plus" }, `+ на деле: ${f.got}`))
      : el("pre", {}, f.text))));
  box.replaceChildren(summary, ...problems, ...failed);
});

async function saveTest(write) {
  const data = await api("/api/tests/save", { name: $("test-name").value, write });
  let text = data.yaml;
  if (write) {
    text = data.saved ? `Сохранено в ${data.path}:\n\n${data.yaml}` : `Не сохранено:\n${data.problems.join("\n")}`;
  }
  $("test-yaml").textContent = text;
}
$("test-show").addEventListener("click", () => saveTest(false));
$("test-save").addEventListener("click", () => saveTest(true));

// --- start and live updates ---------------------------------------------------------
function listen() {
  const source = new EventSource("/api/events" + (token ? `?token=${encodeURIComponent(token)}` : ""));
  source.addEventListener("flows", () => refreshFlows());
  source.addEventListener("chat", () => loadSession());
  source.addEventListener("hello", () => { document.body.dataset.live = "yes"; });
}

async function start() {
  let info;
  try {
    info = await api("/api/info");
  } catch (error) {
    return;
  }
  $("token-form").hidden = true;
  $("studio").hidden = false;
  $("safety").replaceChildren(...info.safety.map((s) => el("p", { class: s.real ? "real" : "safe" }, s.text)));
  $("agent-box").hidden = !info.agent;
  await refreshFlows();
  const session = await api("/api/session");
  if (!session.items.length) await api("/api/restart", {});
  await loadSession();
  listen();
}

start();
