// AlloyForge chat page: served by af-server itself (no CDN, no build step). Conversations and
// settings live in this browser's localStorage; replies stream from /v1/chat/completions.
"use strict";

const STORE_CONVERSATIONS = "af.conversations";
const STORE_SETTINGS = "af.settings";
const DEFAULT_SETTINGS = { system: "", temperature: 0.7, top_p: 1, max_tokens: 512, seed: "", api_key: "" };
const SETTING_FIELDS = ["system", "temperature", "top_p", "max_tokens", "seed", "api_key"];

const $ = (id) => document.getElementById(id);
let conversations = load(STORE_CONVERSATIONS, []);
let settings = Object.assign({}, DEFAULT_SETTINGS, load(STORE_SETTINGS, {}));
let currentId = conversations.length ? conversations[0].id : null;
let modelId = "";
let pendingImage = null;  // data URL of the image attached to the next message
let controller = null;    // AbortController of the running request

function load(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value === null ? fallback : value;
  } catch (e) {
    return fallback;
  }
}

function save() {
  localStorage.setItem(STORE_CONVERSATIONS, JSON.stringify(conversations));
  localStorage.setItem(STORE_SETTINGS, JSON.stringify(settings));
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (settings.api_key) h.Authorization = "Bearer " + settings.api_key;
  return h;
}

function current() {
  return conversations.find((c) => c.id === currentId) || null;
}

function newConversation() {
  const c = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), title: "New chat", messages: [] };
  conversations.unshift(c);
  currentId = c.id;
  save();
  render();
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

// Text of a message whose content is a string or a list of content parts.
function textOf(content) {
  if (typeof content === "string") return content;
  return content.filter((p) => p.type === "text").map((p) => p.text).join("");
}

function messageElement(message) {
  const div = document.createElement("div");
  div.className = "msg " + message.role;
  if (Array.isArray(message.content)) {
    for (const part of message.content) {
      if (part.type === "image_url") {
        const img = document.createElement("img");
        img.src = part.image_url.url;
        img.alt = "attached image";
        div.appendChild(img);
      }
    }
  }
  div.appendChild(document.createTextNode(textOf(message.content)));  // never parsed as HTML
  return div;
}

function render() {
  const list = $("conversations");
  list.replaceChildren();
  for (const c of conversations) {
    const li = document.createElement("li");
    li.className = c.id === currentId ? "current" : "";
    const title = document.createElement("span");
    title.textContent = c.title;
    const del = document.createElement("button");
    del.type = "button";
    del.title = "Delete";
    del.textContent = "×";
    del.addEventListener("click", (e) => {
      e.stopPropagation();
      conversations = conversations.filter((x) => x.id !== c.id);
      if (currentId === c.id) currentId = conversations.length ? conversations[0].id : null;
      save();
      render();
    });
    li.append(title, del);
    li.addEventListener("click", () => {
      if (controller) return;
      currentId = c.id;
      render();
    });
    list.appendChild(li);
  }
  const box = $("messages");
  box.replaceChildren();
  const c = current();
  if (c) for (const m of c.messages) box.appendChild(messageElement(m));
  box.scrollTop = box.scrollHeight;
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
  document.body.dataset.state = busy ? "streaming" : "idle";
}

function requestBody(c) {
  const messages = [];
  if (settings.system) messages.push({ role: "system", content: settings.system });
  for (const m of c.messages) messages.push({ role: m.role, content: m.content });
  const body = { model: modelId, messages, stream: true, stream_options: { include_usage: true } };
  const number = (v) => (v === "" || v === null || v === undefined ? null : Number(v));
  if (number(settings.temperature) !== null) body.temperature = number(settings.temperature);
  if (number(settings.top_p) !== null) body.top_p = number(settings.top_p);
  if (number(settings.max_tokens) !== null) body.max_tokens = number(settings.max_tokens);
  if (number(settings.seed) !== null) body.seed = number(settings.seed);
  return body;
}

// Reads a server-sent-events body, calling onEvent with each parsed JSON payload.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send() {
  const text = $("prompt").value;
  if (controller || (!text.trim() && !pendingImage)) return;
  if (!current()) newConversation();
  const c = current();
  const content = pendingImage
    ? [{ type: "image_url", image_url: { url: pendingImage } }, { type: "text", text }]
    : text;
  c.messages.push({ role: "user", content });
  if (c.title === "New chat") c.title = text.slice(0, 40) || "Image";
  $("prompt").value = "";
  pendingImage = null;
  $("attachments").replaceChildren();
  $("image").value = "";
  const body = JSON.stringify(requestBody(c));  // before the reply being written joins the history
  const reply = { role: "assistant", content: "" };
  c.messages.push(reply);
  save();
  render();
  const bubble = $("messages").lastElementChild;
  bubble.classList.add("streaming");
  showError("");
  setBusy(true);
  controller = new AbortController();
  const started = performance.now();
  let firstToken = 0;
  let usage = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body, signal: controller.signal,
    });
    if (!response.ok) {
      let message = "HTTP " + response.status;
      try {
        message = (await response.json()).error.message;
      } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    await readEvents(response, (event) => {
      if (event.error) throw new Error(event.error.message || "server error");
      if (event.usage) usage = event.usage;
      const delta = event.choices && event.choices[0] && event.choices[0].delta;
      if (delta && delta.content) {
        if (!firstToken) firstToken = performance.now();
        reply.content += delta.content;
        bubble.lastChild.nodeValue = reply.content;
        $("messages").scrollTop = $("messages").scrollHeight;
      }
    });
    if (usage && firstToken) {
      const seconds = (performance.now() - firstToken) / 1000;
      const rate = usage.completion_tokens > 1 && seconds > 0 ? ((usage.completion_tokens - 1) / seconds).toFixed(1) : "–";
      $("stats").textContent = `${usage.prompt_tokens} prompt tokens, ${usage.completion_tokens} generated, ` +
        `${rate} tok/s, first token ${Math.round(firstToken - started)} ms`;
    }
  } catch (e) {
    if (e.name === "AbortError") {
      $("stats").textContent = "stopped";
    } else {
      showError(e.message);
      if (!reply.content) c.messages.splice(c.messages.indexOf(reply), 1);
    }
  } finally {
    controller = null;
    bubble.classList.remove("streaming");
    setBusy(false);
    save();
    render();
  }
}

async function connect() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (response.status === 401) {
      $("model").textContent = "API key required (Settings)";
      return;
    }
    const models = await response.json();
    const model = models.data[0];
    modelId = model.id;
    $("model").textContent = model.id;
    $("image-label").hidden = !(model.modalities || []).includes("image");
  } catch (e) {
    $("model").textContent = "server unreachable";
  }
}

function bindSettings() {
  for (const name of SETTING_FIELDS) {
    const input = $(name);
    input.value = settings[name];
    input.addEventListener("change", () => {
      settings[name] = input.value;
      save();
      if (name === "api_key") connect();
    });
  }
}

function init() {
  bindSettings();
  $("new-chat").addEventListener("click", () => {
    if (!controller) newConversation();
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      send();
    }
  });
  $("stop").addEventListener("click", () => {
    if (controller) controller.abort();
  });
  $("image").addEventListener("change", () => {
    const file = $("image").files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      pendingImage = reader.result;
      const img = document.createElement("img");
      img.src = pendingImage;
      img.alt = file.name;
      $("attachments").replaceChildren(img);
    };
    reader.readAsDataURL(file);
  });
  setBusy(false);
  render();
  connect();
}

init();
